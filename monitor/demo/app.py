"""The demo target: a Starlette app imitating the PAM backend (HS256 auth, CSRF, settings), with fault switches."""

from __future__ import annotations

import asyncio
import io
import json
import math
import struct
import wave
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from monitor.demo.faults import BY_NAME, FAULT_NAMES
from monitor.demo.openapi import openapi_document
from monitor.demo.postgrest import rest_endpoint
from monitor.demo.store import DemoDatabaseError, MemorySettingsStore, MissingRelationError, SettingsStore
from monitor.demo.supabase import CLUSTER_FAULTS, SupabaseParts
from monitor.demo.tokens import (
    CSRF_COOKIE,
    CSRF_HEADER,
    FRONTEND_ORIGIN,
    TokenError,
    csrf_valid,
    new_csrf_token,
    verify_token,
)

log = structlog.get_logger("pam_monitor.demo")


DEFAULT_SETTINGS: Mapping[str, Any] = MappingProxyType({"voice_enabled": True, "language": "en", "theme": "system"})
"""What GET answers for a user with no stored settings (read-only; the app hands out copies)."""
# A settings body larger than this is refused (413): settings are a handful of small fields.
_BODY_LIMIT = 16 * 1024
# A hung request waits for the client to go away; past this it is answered anyway so nothing lives forever.
_HANG_LIMIT_S = 600.0


def sine_wav(seconds: float = 0.5, rate: int = 16000, freq: float = 440.0) -> bytes:
    """A mono 16-bit PCM WAV of a sine tone, written with the standard library's wave module."""
    frames = int(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(frames)
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples)
    return buf.getvalue()


class _Faults:
    """The active fault switches of one demo app."""

    def __init__(self) -> None:
        self.active: set[str] = set()

    def __contains__(self, name: object) -> bool:
        return name in self.active


class _HangGate:
    """ASGI middleware: while `hang` is on, every request outside /_faults waits until the client gives up."""

    def __init__(self, app: ASGIApp, faults: _Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # /rest/v1 is the PostgREST stand-in: another service than the hung backend in a real deployment.
        if (scope["type"] != "http" or "hang" not in self.faults or scope["path"].startswith("/_faults")
                or scope["path"].startswith("/rest/v1/")):
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(_HANG_LIMIT_S):
                while (await receive())["type"] != "http.disconnect":
                    pass
        except TimeoutError:
            await JSONResponse({"detail": "hung request released"}, status_code=504)(scope, receive, send)


class _Cors:
    """ASGI middleware: Starlette's CORSMiddleware allowing the demo frontend (credentials, Authorization, the CSRF
    header, GET/PUT), or while `cors_drop_origin` is on the same settings with the frontend's origin left out of
    the list (a deploy that lost it): requests without `Origin` (curl, server-side probes) see no difference."""

    def __init__(self, app: ASGIApp, faults: _Faults) -> None:
        settings: dict[str, Any] = {"allow_credentials": True, "allow_methods": ["GET", "PUT", "POST"],
                                    "allow_headers": ["Authorization", CSRF_HEADER, "Content-Type"]}
        self.right = CORSMiddleware(app, allow_origins=[FRONTEND_ORIGIN], **settings)
        self.wrong = CORSMiddleware(app, allow_origins=["https://old-frontend.invalid"], **settings)
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self.wrong if "cors_drop_origin" in self.faults else self.right
        await chosen(scope, receive, send)


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _missing_relation(table: str) -> JSONResponse:
    """What a FastAPI backend on Supabase answers when its query names a relation that is not there."""
    return _json({"detail": f'relation "{table}" does not exist', "code": "42P01"}, 500)


def create_demo_app(*, jwt_secret: str, store: SettingsStore | None = None,
                    supabase: SupabaseParts | None = None) -> Starlette:
    """The demo PAM backend: health, voice, a CSRF token and user settings behind HS256 auth, fault switches.

    `supabase` (only on the demo's own cluster) adds the PostgREST stand-in at /rest/v1/{table} and the
    unapplied_migration and stale_schema_cache faults; without it they are refused (409)."""
    settings_store: SettingsStore = store if store is not None else MemorySettingsStore()
    faults = _Faults()
    audio = sine_wav()
    document = openapi_document(list(FAULT_NAMES))

    async def health(request: Request) -> Response:
        if "garbage" in faults:
            return Response(b"<html>\x00\xff\xfe garbage, not JSON", media_type="text/html")
        return _json({"status": "healthy", "service": "pam-backend-demo"})

    async def voice_health(request: Request) -> Response:
        if "voice_down" in faults:
            return _json({"status": "unavailable", "engine": "edge-tts"}, 503)
        return _json({"status": "healthy", "engine": "edge-tts"})

    async def tts(request: Request) -> Response:
        if "voice_down" in faults:
            return _json({"detail": "voice engine unavailable"}, 503)
        try:
            payload = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _json({"detail": "body must be JSON: {\"text\": \"...\"}"}, 422)
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str) or not payload["text"]:
            return _json({"detail": "field text must be a non-empty string"}, 422)
        if "short_audio" in faults:
            return Response(b"\x00" * 200, media_type="audio/wav")
        return Response(audio, media_type="audio/wav")

    async def openapi(request: Request) -> Response:
        return _json(document)

    async def csrf_token(request: Request) -> Response:
        token = new_csrf_token(jwt_secret)
        answer = _json({"csrf_token": token})
        answer.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path="/")
        return answer

    def refuse(request: Request, user_id: str) -> Response | None:
        """FastAPI HTTPBearer-like: 403 without a bearer token, 401 for a bad one, 403 for another user."""
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return _json({"detail": "Not authenticated"}, 403)
        try:
            claims = verify_token(credentials.strip(), jwt_secret, accept_forged="accept_forged_tokens" in faults)
        except TokenError:
            return _json({"detail": "Invalid authentication credentials"}, 401)
        if claims.get("sub") != user_id and "tenant_leak" not in faults:
            return _json({"detail": "Not allowed to access another user's settings"}, 403)
        return None

    async def write_settings(request: Request, user_id: str) -> Response:
        if not csrf_valid(request.cookies.get(CSRF_COOKIE), request.headers.get(CSRF_HEADER), jwt_secret):
            return _json({"detail": "CSRF token missing or invalid"}, 403)
        raw = await request.body()
        if len(raw) > _BODY_LIMIT:
            return _json({"detail": f"body over {_BODY_LIMIT} bytes"}, 413)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return _json({"detail": "body must be a JSON object"}, 422)
        if "lost_write" in faults:
            stored = await settings_store.get(user_id) or {}
            return _json({**DEFAULT_SETTINGS, **stored, **body})  # answered as if saved; nothing is
        return _json({**DEFAULT_SETTINGS, **await settings_store.put(user_id, body)})

    async def user_settings(request: Request) -> Response:
        if "settings_500" in faults:
            return _json({"detail": "Internal Server Error"}, 500)
        user_id = request.path_params["user_id"]
        if "settings_open" not in faults:
            refused = refuse(request, user_id)
            if refused is not None:
                return refused
        if "settings_db_500" in faults:
            return _missing_relation("user_settings")
        try:
            if request.method == "PUT":
                return await write_settings(request, user_id)
            return _json({**DEFAULT_SETTINGS, **(await settings_store.get(user_id) or {})})
        except MissingRelationError as exc:
            return _missing_relation(exc.table)

    def listing() -> dict[str, Any]:
        return {"active": sorted(faults.active), "known": list(FAULT_NAMES)}

    async def list_faults(request: Request) -> Response:
        return _json(listing())

    async def set_fault(request: Request) -> Response:
        name = request.path_params["name"]
        fault = BY_NAME.get(name)
        if fault is None:
            return _json({"detail": f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}",
                          "known": list(FAULT_NAMES)}, 404)
        if name not in faults:
            try:
                if name in CLUSTER_FAULTS:
                    if supabase is None:
                        raise DemoDatabaseError(f"the {name} fault needs the demo's own throwaway PostgreSQL "
                                                "cluster (not --no-db, not --database-url)")
                    await supabase.apply(name)
                elif name == "drop_table":
                    await settings_store.drop_table()
                elif fault.needs_db:
                    await settings_store.apply_fault(name)
            except DemoDatabaseError as exc:
                return _json({"detail": str(exc)}, 409)
        faults.active.add(name)
        log.info("demo.fault_set", fault=name, active=sorted(faults.active))
        return _json(listing())

    async def clear_faults(request: Request) -> Response:
        faults.active.clear()
        await settings_store.restore()
        if supabase is not None:
            await supabase.heal()
        log.info("demo.faults_cleared")
        return _json(listing())

    routes = [
        Route("/health", health),
        Route("/openapi.json", openapi),
        Route("/api/v1/pam/voice/health", voice_health),
        Route("/api/v1/pam/voice/tts", tts, methods=["POST"]),
        Route("/api/auth/csrf-token", csrf_token),
        Route("/api/v1/users/{user_id}/settings", user_settings, methods=["GET", "PUT"]),
        Route("/_faults", list_faults, methods=["GET"]),
        Route("/_faults", clear_faults, methods=["DELETE"]),
        Route("/_faults/{name}", set_fault, methods=["POST"]),
    ]
    if supabase is not None:
        routes.append(Route("/rest/v1/{table}", rest_endpoint(supabase.cache), methods=["GET"]))
    return Starlette(routes=routes, middleware=[Middleware(_HangGate, faults=faults), Middleware(_Cors, faults=faults)])


__all__ = ["DEFAULT_SETTINGS", "FAULT_NAMES", "create_demo_app", "sine_wav"]
