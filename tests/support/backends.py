"""Stand-in backends that behave like real FastAPI + Supabase ones, each with one flaw found on a real backend.

`settings_app(flaw)` serves `GET/PUT /api/v1/users/{user_id}/settings` the way a FastAPI router with an
HTTPBearer dependency does, verifying Supabase access tokens (HS256, audience `authenticated`) with PyJWT, then
an owner check (the token's `sub` must be the path's user id). Each flaw is one way real backends get this wrong:

    none                 correct: no header 403 "Not authenticated", bad token 401, other user's id 403, own 200
    unverified_fallback  a token that fails verification is decoded without verifying it: the owner check is all
                         that stands, and a forged token with the path's user id as `sub` reads the settings
    crash_on_invalid     no header 401; a bad token makes the handler dereference claims it never got: 500
    routes_after_auth    any decodable token gets past the dependency; the handler then looks the user up (404)
                         or validates the body (422)
    csrf_first           a CSRF middleware before auth refuses every unsafe method without X-CSRF-Token (403)
    malformed_400        a header that is not `Bearer <JWT>` is a 400 before the token is looked at

`RateLimited` wraps any ASGI app in a fixed-window limiter answering 429 (or 503) with Retry-After, the way
slowapi or a gateway does. `voice_app` is a voice system whose health and synthesis are broken separately.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.targets import wav_bytes

SECRET = "backend-test-jwt-secret-0123456789abcdef"
"""The stand-in backends' real JWT secret (Supabase's project JWT secret)."""

USER_ID = "7c0f3a8e-0000-4000-8000-000000000001"
"""A user whose settings exist."""

SETTINGS_PATH = "/api/v1/users/{user_id}/settings"
CSRF_TOKEN = "csrf-0f9e8d7c"
"""The value the csrf_first backend's middleware wants in X-CSRF-Token."""

Flaw = Literal["none", "unverified_fallback", "crash_on_invalid", "routes_after_auth", "csrf_first", "malformed_400"]
FLAWS: tuple[Flaw, ...] = ("none", "unverified_fallback", "crash_on_invalid", "routes_after_auth", "csrf_first",
                           "malformed_400")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def user_token(sub: str = USER_ID, ttl_s: float = 600) -> str:
    """A real access token for `sub`, as Supabase Auth would issue it."""
    now = int(time.time())
    claims = {"sub": sub, "role": "authenticated", "aud": "authenticated", "iss": "supabase", "iat": now,
              "exp": now + int(ttl_s)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.response = JSONResponse({"detail": detail}, status_code=status,
                                     headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


def _verified(token: str) -> dict[str, Any] | None:
    try:
        claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"], audience="authenticated")
    except jwt.InvalidTokenError:
        return None
    return claims


def _claims(request: Request, flaw: Flaw) -> dict[str, Any]:
    """The HTTPBearer dependency, flawed as asked; raises _Refused with the answer the backend gives."""
    header = request.headers.get("authorization")
    if header is None:
        raise _Refused(401 if flaw == "crash_on_invalid" else 403, "Not authenticated")
    scheme, _, token = header.partition(" ")
    if flaw == "malformed_400" and (scheme != "Bearer" or token.count(".") != 2):
        raise _Refused(400, "Malformed Authorization header")
    claims = _verified(token)
    if claims is not None:
        return claims
    if flaw in ("unverified_fallback", "routes_after_auth"):
        try:  # "fall back" to reading the token without verifying it: the bug
            unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
            return unverified
        except jwt.DecodeError:
            pass
    if flaw == "crash_on_invalid":
        broken: Any = None
        return {"sub": broken["sub"]}  # the handler assumed a dependency that never returns None: TypeError, 500
    raise _Refused(401, "Invalid authentication credentials")


SETTINGS_OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "PAM backend", "version": "1.0.0"},
    "paths": {
        "/health": {"get": {"operationId": "health", "responses": {"200": {"description": "ok"}}}},
        SETTINGS_PATH: {
            "get": {"operationId": "get_settings", "security": [{"HTTPBearer": []}],
                    "parameters": [{"$ref": "#/components/parameters/UserId"}],
                    "responses": {"200": {"description": "ok"}}},
            "put": {"operationId": "put_settings", "security": [{"HTTPBearer": []}],
                    "parameters": [{"$ref": "#/components/parameters/UserId"}],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/SettingsUpdate"}}}},
                    "responses": {"200": {"description": "ok"}, "422": {"description": "Validation Error"}}},
        },
    },
    "components": {
        "parameters": {"UserId": {"name": "user_id", "in": "path", "required": True,
                                  "schema": {"type": "string", "format": "uuid", "title": "User Id"}}},
        "schemas": {"SettingsUpdate": {"type": "object", "required": ["voice_enabled"], "properties": {
            "voice_enabled": {"type": "boolean"}, "theme": {"type": "string", "enum": ["dark", "light"]}}}},
        "securitySchemes": {"HTTPBearer": {"type": "http", "scheme": "bearer"}},
    },
}
"""The settings backend's OpenAPI document, shaped as FastAPI writes it (served at /openapi.json)."""


def settings_app(flaw: Flaw = "none") -> Starlette:
    """The backend's settings endpoint with `flaw` (module docstring); settings exist for USER_ID only. Like a
    FastAPI app, it serves its OpenAPI document at /openapi.json and has an open /health."""
    store: dict[str, dict[str, Any]] = {USER_ID: {"voice_enabled": True, "theme": "dark"}}

    async def settings(request: Request) -> Response:
        if flaw == "csrf_first" and request.method in ("PUT", "POST", "PATCH", "DELETE") \
                and request.headers.get("x-csrf-token") != CSRF_TOKEN:
            return JSONResponse({"detail": "CSRF token missing or invalid"}, status_code=403)
        try:
            claims = _claims(request, flaw)
        except _Refused as refused:
            return refused.response
        except TypeError:  # what Starlette's ServerErrorMiddleware answers, without a traceback in the test log
            return Response("Internal Server Error", status_code=500, media_type="text/plain")
        user_id = request.path_params["user_id"]
        if flaw == "routes_after_auth":
            if request.method == "PUT":
                body = await request.body()
                if not body:
                    return JSONResponse({"detail": [{"loc": ["body"], "msg": "Field required",
                                                     "type": "missing"}]}, status_code=422)
            if claims.get("sub") not in store:
                return JSONResponse({"detail": "User settings not found"}, status_code=404)
        elif claims.get("sub") != user_id:
            return JSONResponse({"detail": "Not the owner of this resource"}, status_code=403)
        if user_id not in store:
            return JSONResponse({"detail": "User settings not found"}, status_code=404)
        return JSONResponse({"user_id": user_id, **store[user_id]})

    async def openapi(request: Request) -> Response:
        return JSONResponse(SETTINGS_OPENAPI)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    return Starlette(routes=[Route(SETTINGS_PATH, settings, methods=["GET", "PUT"]),
                             Route("/openapi.json", openapi), Route("/health", health)])


@dataclass
class RateLimited:
    """A fixed-window rate limiter in front of `app`: `limit` requests per `window` seconds, then `status` (429, or
    503) with Retry-After until the window ends, in seconds or, with `http_date`, as an HTTP-date. With
    `only_tokens`, only requests that carry an Authorization header are counted and limited (a limiter keyed on
    the caller's token); with `only_path`, only requests whose path starts with it (a limiter on one route)."""

    app: ASGIApp
    limit: int
    window: float = 60.0
    status: int = 429
    http_date: bool = False
    only_tokens: bool = False
    only_path: str | None = None
    seen: int = 0
    started: float = field(default_factory=time.monotonic)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request; pass it on while under the limit, else answer it as limited."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        exempt = self.only_path is not None and not str(scope["path"]).startswith(self.only_path)
        if exempt or (self.only_tokens and b"authorization" not in headers):
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        if now - self.started >= self.window:
            self.started, self.seen = now, 0
        self.seen += 1
        if self.seen <= self.limit:
            await self.app(scope, receive, send)
            return
        wait = max(math.ceil(self.started + self.window - now), 1)
        value = email.utils.formatdate(time.time() + wait, usegmt=True) if self.http_date else str(wait)
        response = JSONResponse({"detail": "Rate limit exceeded: too many requests"}, status_code=self.status,
                                headers={"Retry-After": value})
        await response(scope, receive, send)


@dataclass
class VoiceSystem:
    """A voice system whose health and synthesis break separately: `health` is what /voice/health reports
    (healthy, degraded, or down for a 503) and `synthesis` what /voice/tts does (works, broken for a 500 naming
    the engine, silent for 200 bytes of JSON)."""

    health: Literal["healthy", "degraded", "down"] = "healthy"
    synthesis: Literal["works", "broken", "silent"] = "works"
    calls: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        """The ASGI app: GET /voice/health, POST /voice/tts."""
        return Starlette(routes=[Route("/voice/health", self._health), Route("/voice/tts", self._tts,
                                                                             methods=["POST"])])

    async def _health(self, request: Request) -> Response:
        self.calls.append("health")
        if self.health == "down":
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": self.health, "engine": "edge-tts", "fallbacks": 0})

    async def _tts(self, request: Request) -> Response:
        self.calls.append("tts")
        if self.synthesis == "broken":
            return JSONResponse({"detail": "TTS engine edge-tts failed: NoAudioReceived"}, status_code=500)
        if self.synthesis == "silent":
            return JSONResponse({"audio": None, "error": "empty"}, status_code=200)
        return Response(wav_bytes(), media_type="audio/wav")
