"""Stand-ins for signed-in checks: a FastAPI-like backend with a CSRF double submit and an owner check, and a
Supabase Auth server (password and refresh_token grants). Both verify/issue real HS256 tokens with PyJWT.

Tests switch faults by setting attributes of the app's state object (the server runs in a thread of the same
process) and read what arrived from it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.targets import wav_bytes

JWT_SECRET = "signed-in-test-secret-0123456789abcdef"
"""The project's JWT secret: the backend verifies with it, the Auth stand-in signs with it."""
MONITOR_SUB = "7c0f3a8e-0000-4000-8000-000000000001"
OTHER_SUB = "00000000-0000-4000-8000-000000000002"
CSRF_COOKIE = "csrf_token"
SETTINGS = "/api/v1/users/{user_id}/settings"


@dataclass
class Backend:
    """The backend's data and switches. Faults: `settings_500` (relation missing behind the auth wall),
    `write_500`, `lost_write` (PUT 200, nothing saved), `tenant_leak` (no owner check), `csrf_required_always`
    (CSRF middleware also on GET), `no_csrf_field` (the CSRF endpoint answers without the token)."""

    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings_500: bool = False
    write_500: bool = False
    lost_write: bool = False
    tenant_leak: bool = False
    csrf_required_always: bool = False
    no_csrf_field: bool = False
    tokens: list[str] = field(default_factory=list)  # every bearer token that arrived, in order
    jwt_secret: str = JWT_SECRET  # what it verifies with: set another to rotate the project's secret
    cookies: list[dict[str, str]] = field(default_factory=list)  # the cookies of every request, in order

    def subject(self, request: Request) -> str | None:
        """The verified token's sub, or None (no token, bad signature, expired, wrong audience)."""
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        token = header.removeprefix("Bearer ")
        self.tokens.append(token)
        return self.subject_of(token)

    def subject_of(self, token: str) -> str | None:
        """What the backend makes of a token right now: its sub if it verifies (signature, exp, aud), else None."""
        try:
            claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"], audience="authenticated")
        except jwt.PyJWTError:
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) else None


def create_backend_app(state: Backend) -> Starlette:
    """GET /api/auth/csrf-token, GET/PUT /api/v1/users/{user_id}/settings (owner check, CSRF on PUT), and
    GET /api/debug/echo-auth (a 500 echoing the Authorization and Cookie headers), GET /api/v1/pam/voice/health
    and POST /api/v1/pam/voice/tts (a WAV for a signed-in caller, else 401)."""

    async def csrf_token(request: Request) -> Response:
        state.cookies.append(dict(request.cookies))
        token = secrets.token_urlsafe(16)
        response = JSONResponse({} if state.no_csrf_field else {"csrf_token": token})
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict")
        return response

    async def settings(request: Request) -> Response:
        state.cookies.append(dict(request.cookies))
        sub = state.subject(request)
        if sub is None:
            return JSONResponse({"detail": "Not authenticated"}, status_code=401 if "authorization" in
                                request.headers else 403)
        user_id = request.path_params["user_id"]
        if sub != user_id and not state.tenant_leak:
            return JSONResponse({"detail": "Not allowed to access another user's settings"}, status_code=403)
        unsafe = request.method != "GET"
        if unsafe or state.csrf_required_always:
            sent = request.headers.get("x-csrf-token")
            if not sent or sent != request.cookies.get(CSRF_COOKIE):
                return JSONResponse({"detail": "CSRF token missing"}, status_code=403)
        if state.settings_500 or (unsafe and state.write_500):
            return JSONResponse({"detail": 'relation "user_settings" does not exist', "code": "42P01"},
                                status_code=500)
        if unsafe:
            body = await request.json()
            if not state.lost_write:
                state.settings.setdefault(user_id, {}).update(body)
        return JSONResponse({"user_id": user_id, **state.settings.get(user_id, {"voice_enabled": True})})

    async def echo_auth(request: Request) -> Response:
        # A careless error handler that echoes the request's credentials: a result must still not show them.
        state.cookies.append(dict(request.cookies))
        return JSONResponse({"detail": f"boom for {request.headers.get('authorization')}",
                             "cookie": request.headers.get("cookie")}, status_code=500)

    async def voice_health(request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    async def tts(request: Request) -> Response:
        # Synthesis is for signed-in users only, as on the real backend.
        if state.subject(request) is None:
            return JSONResponse({"detail": "Not authenticated"}, status_code=401)
        return Response(wav_bytes(), media_type="audio/wav")

    return Starlette(routes=[
        Route("/api/v1/pam/voice/health", voice_health),
        Route("/api/v1/pam/voice/tts", tts, methods=["POST"]),
        Route("/api/debug/echo-auth", echo_auth),
        Route("/api/auth/csrf-token", csrf_token),
        Route("/api/v1/users/{user_id}/settings", settings, methods=["GET", "PUT"]),
    ])


@dataclass
class Auth:
    """The Auth server's users and switches: `expires_in` of issued tokens, `refresh_broken` (the refresh grant
    answers 400), `status` (answer every request with this status instead)."""

    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # email -> (password, user id)
    api_key: str = "anon-key-test-0123456789"
    expires_in: int = 3600
    refresh_broken: bool = False
    status: int | None = None
    grants: list[str] = field(default_factory=list)  # grant_type of every request, in order
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # live refresh token -> user id
    issued: list[str] = field(default_factory=list)  # access tokens issued, in order


def create_auth_app(state: Auth) -> Starlette:
    """POST /auth/v1/token?grant_type=password|refresh_token, answering like Supabase Auth (GoTrue)."""

    def tokens_for(user_id: str, email: str) -> JSONResponse:
        now = int(time.time())
        claims = {"sub": user_id, "aud": "authenticated", "role": "authenticated", "email": email,
                  "iat": now, "exp": now + state.expires_in, "session_id": str(uuid.uuid4())}
        access = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        refresh = secrets.token_urlsafe(12)
        state.refresh_tokens[refresh] = user_id
        state.issued.append(access)
        return JSONResponse({"access_token": access, "token_type": "bearer", "expires_in": state.expires_in,
                             "expires_at": now + state.expires_in, "refresh_token": refresh,
                             "user": {"id": user_id, "aud": "authenticated", "email": email}})

    def error(status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"code": status, "error_code": code, "msg": message}, status_code=status)

    async def token(request: Request) -> Response:
        grant = request.query_params.get("grant_type", "")
        state.grants.append(grant)
        if state.status is not None:
            return error(state.status, "unexpected_failure", "the auth server is failing")
        if request.headers.get("apikey") != state.api_key:
            return JSONResponse({"message": "Invalid API key"}, status_code=401)
        body = await request.json()
        if grant == "password":
            known = state.users.get(str(body.get("email")))
            if known is None or known[0] != body.get("password"):
                return error(400, "invalid_credentials", "Invalid login credentials")
            return tokens_for(known[1], str(body["email"]))
        if grant == "refresh_token":
            user_id = state.refresh_tokens.pop(str(body.get("refresh_token")), None)
            if state.refresh_broken or user_id is None:
                return error(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")
            email = next(e for e, (_, uid) in state.users.items() if uid == user_id)
            return tokens_for(user_id, email)
        return error(400, "unsupported_grant_type", f"unsupported grant_type {grant!r}")

    return Starlette(routes=[Route("/auth/v1/token", token, methods=["POST"])])
