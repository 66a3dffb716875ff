"""Stand-ins for what refuses in front of a backend: an IP-blocking middleware, a WAF, a Basic-auth gateway, a rate
limiter answering before routing, a CSRF middleware on POST, and a voice health body to choose.

`Wall` wraps any ASGI app (the signed-in Backend of tests/support/signed_in.py in these tests). Tests switch it by
setting its attributes (the server runs in a thread of the same process); everything it refused is counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
Receive = Any
Send = Any

BLOCKED_BODY = {"message": "Your IP address has been blocked due to security violations"}
"""What the real backend's IP-blocking middleware answered, measured: a JSON 403 to every route."""
WAF_PAGE = ("<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1>"
            "<p>You don't have permission to access this resource.</p></body></html>")
"""A WAF's (or a reverse proxy's) HTML 403 without a block marker: only its shape tells it from the auth layer."""
WAF_DENIED_PAGE = ("<html><head><title>Access Denied</title></head><body><h1>Access Denied</h1>You don't have "
                   "permission to access this server. Reference #18.6f2e1002</body></html>")
"""An Akamai-style WAF page: its 'Access Denied' in HTML is a block marker."""


@dataclass
class Wall:
    """Switches, checked in this order for every request:

    - `banned` (or `ban_after` distinct paths seen): the IP blocker answers BLOCKED_BODY with 403 to everything;
    - `waf`: 'plain' answers WAF_PAGE, 'denied' WAF_DENIED_PAGE (403, text/html);
    - `gateway`: 401 text/plain with `WWW-Authenticate: Basic realm="gateway"`;
    - `limit`: 429 with Retry-After before routing (to `limit_paths` only, when given);
    - `csrf_posts`: a POST without X-CSRF-Token gets 403 {"detail": "CSRF token missing"};
    - `health`: the JSON body answered (200) on /api/v1/pam/voice/health instead of the app's.
    """

    app: Any
    banned: bool = False
    ban_after: int | None = None
    waf: str | None = None
    gateway: bool = False
    limit: bool = False
    limit_paths: tuple[str, ...] = ()
    csrf_posts: bool = False
    health: dict[str, Any] | None = None
    seen_paths: set[str] = field(default_factory=set)
    refused: list[tuple[str, int]] = field(default_factory=list)  # (path, status) of every refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        self.seen_paths.add(path)
        if self.ban_after is not None and len(self.seen_paths) > self.ban_after:
            self.banned = True
        if self.banned:
            await self._answer(send, path, 403, json.dumps(BLOCKED_BODY), "application/json")
        elif self.waf is not None:
            await self._answer(send, path, 403, WAF_DENIED_PAGE if self.waf == "denied" else WAF_PAGE, "text/html")
        elif self.gateway:
            await self._answer(send, path, 401, "Unauthorized", "text/plain",
                               [(b"www-authenticate", b'Basic realm="gateway"')])
        elif self.limit and (not self.limit_paths or any(path.startswith(p) for p in self.limit_paths)):
            await self._answer(send, path, 429, json.dumps({"detail": "Too Many Requests"}), "application/json",
                               [(b"retry-after", b"1")])
        elif self.csrf_posts and scope["method"] == "POST" and "x-csrf-token" not in headers:
            await self._answer(send, path, 403, json.dumps({"detail": "CSRF token missing"}), "application/json")
        elif self.health is not None and path == "/api/v1/pam/voice/health":
            await self._answer(send, path, 200, json.dumps(self.health), "application/json", record=False)
        else:
            await self.app(scope, receive, send)

    async def _answer(self, send: Send, path: str, status: int, body: str, media: str,
                      extra: list[tuple[bytes, bytes]] | None = None, *, record: bool = True) -> None:
        if record:
            self.refused.append((path, status))
        data = body.encode()
        headers = [(b"content-type", media.encode()), (b"content-length", str(len(data)).encode()), *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
