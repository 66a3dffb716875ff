"""A backend's defences as real ASGI middleware, for tests that must prove pam-monitor cannot get itself banned:
an IP-blocking middleware (a client touching more than `max_routes` distinct routes within `window` seconds is
banned for `ban` seconds, every route answering 403 while it lasts, /health included), a Redis-less in-process
rate limiter (429 with Retry-After past `limit` requests per `window` per client), and a backend of many secured
routes served from its own OpenAPI document.

    app = IpBlocker(RateLimiter(secured_backend(200)), max_routes=20)
    with serve_asgi(app) as base: ...
    assert [] == app.bans

Clocks are injectable (monotonic seconds), so a window can be shortened or stepped by a test.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

BLOCKED = {"message": "Your IP address has been blocked due to security violations"}
"""What the measured backend's security middleware answers a banned client, on every route."""


@dataclass(frozen=True, slots=True)
class Ban:
    """One ban: the client, when (monotonic seconds) and the distinct routes it had touched in the window."""

    client: str
    at: float
    routes: int


async def _json(send: Send, status: int, body: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class IpBlocker:
    """Bans a client that touches more than `max_routes` distinct paths within `window` seconds, for `ban`
    seconds; a banned client gets `403 BLOCKED` on every path. `bans` lists every ban, `routes_seen` the most
    distinct paths any client touched within one window."""

    def __init__(self, app: App, *, max_routes: int = 20, window: float = 60.0, ban: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.max_routes, self.window, self.ban, self.clock = app, max_routes, window, ban, clock
        self.bans: list[Ban] = []
        self.routes_seen = 0
        self._touched: dict[str, deque[tuple[float, str]]] = {}
        self._banned_until: dict[str, float] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client, path, now = _client(scope), str(scope["path"]), self.clock()
        with self._lock:
            blocked = self._banned_until.get(client, float("-inf")) > now
            if not blocked:
                touched = self._touched.setdefault(client, deque())
                touched.append((now, path))
                while touched and now - touched[0][0] >= self.window:
                    touched.popleft()
                distinct = len({p for _, p in touched})
                self.routes_seen = max(self.routes_seen, distinct)
                if distinct > self.max_routes:
                    self._banned_until[client] = now + self.ban
                    self.bans.append(Ban(client, now, distinct))
                    blocked = True
        if blocked:
            await _json(send, 403, BLOCKED)
            return
        await self.app(scope, receive, send)


class RateLimiter:
    """At most `limit` requests per client in any `window` seconds (a sliding log, in process: no Redis); past it,
    429 with Retry-After. `limited` counts the 429s it answered."""

    def __init__(self, app: App, *, limit: int = 60, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.limit, self.window, self.clock = app, limit, window, clock
        self.limited = 0
        self.requests = 0
        self._log: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client, now = _client(scope), self.clock()
        with self._lock:
            log = self._log.setdefault(client, deque())
            while log and now - log[0] >= self.window:
                log.popleft()
            over = len(log) >= self.limit
            if over:
                self.limited += 1
                retry = max(1, int(self.window - (now - log[0])) + 1)
            else:
                log.append(now)
                self.requests += 1
        if over:
            await _json(send, 429, {"detail": "Too Many Requests"}, ((b"retry-after", str(retry).encode()),))
            return
        await self.app(scope, receive, send)


def secured_openapi(routes: int) -> dict[str, Any]:
    """An OpenAPI document of `routes` secured GET operations (`/api/v1/things{i}/{item_id}`), /health open."""
    paths: dict[str, Any] = {"/health": {"get": {"responses": {"200": {"description": "ok"}}}}}
    for i in range(routes):
        paths[f"/api/v1/things{i}/{{item_id}}"] = {"get": {
            "security": [{"HTTPBearer": []}],
            "parameters": [{"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "ok"}}}}
    return {"openapi": "3.1.0", "info": {"title": "secured", "version": "1"}, "paths": paths}


def secured_backend(routes: int) -> Starlette:
    """A backend serving `secured_openapi(routes)` at /openapi.json, /health, and 401 on every secured route (it
    checks no token: every request pam-monitor's auth_contract checks send must be refused)."""
    doc = secured_openapi(routes)

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(doc)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "healthy"})

    async def secured(request: Request) -> JSONResponse:
        return JSONResponse({"detail": "Not authenticated"}, status_code=401)

    return Starlette(routes=[Route("/openapi.json", openapi), Route("/health", health),
                             Route("/api/v1/{name}/{item_id}", secured)])
