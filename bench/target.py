"""Fallback benchmark targets when nginx is missing: a raw asyncio HTTP/1.1 server or uvicorn, on 127.0.0.1.

Both answer `GET /health` with a static JSON 200 (keep-alive) and `GET /__count` with nginx stub_status-shaped
counters ("server accepts handled requests\\n A A R"), so bench/run.py reads every target the same way.
Run: `python -m bench.target --kind builtin|uvicorn --port P`.

The builtin server also answers `GET /health/<anything>` like `/health`, and takes blips for bench/soak.py:
`GET /__blip?paths=/health/a,/health/b&seconds=30` makes those paths answer 503 for that long, then recover by
themselves (the soak never has to remember to end a blip).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any
from urllib.parse import parse_qs

HEALTH_BODY = b'{"status":"healthy"}'


class Counters:
    """Connections accepted and requests served, for /__count; paths failing until a monotonic time (blips)."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.failing: dict[bytes, float] = {}

    def blip(self, query: bytes) -> bytes:
        """`paths=a,b&seconds=S`: those paths answer 503 for S seconds (at most an hour)."""
        args = parse_qs(query.decode("latin-1"))
        seconds = min(3600.0, float(args.get("seconds", ["30"])[0]))
        until = time.monotonic() + seconds
        paths = [p.encode() for p in ",".join(args.get("paths", [])).split(",") if p]
        for path in paths:
            self.failing[path] = until
        return f"failing {len(paths)} paths for {seconds:g} s\n".encode()

    def is_failing(self, path: bytes) -> bool:
        """Whether a blip holds this path now (an expired blip is forgotten)."""
        until = self.failing.get(path)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self.failing[path]
        return False

    def stub_status(self) -> bytes:
        """The counters in the layout of nginx's stub_status page."""
        return (
            f"Active connections: 0\nserver accepts handled requests\n"
            f" {self.connections} {self.connections} {self.requests}\n"
        ).encode()


def _response(status: str, body: bytes, content_type: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + content_type
        + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + body
    )


class _HttpProtocol(asyncio.Protocol):
    """Just enough HTTP/1.1 for GET requests without a body; pipelining and keep-alive work."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.counters.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = []
        close = False
        # Bounded by the data received: each turn consumes one complete request head.
        while b"\r\n\r\n" in self.buffer and not close:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            close = b"\r\nconnection: close" in head.lower()  # like nginx: answer, then close first
            parts = head.split(b" ", 2)
            path, _, query = parts[1].partition(b"?") if len(parts) > 1 else (b"", b"", b"")
            self.counters.requests += 1
            if path == b"/health" or path.startswith(b"/health/"):
                if self.counters.failing and self.counters.is_failing(path):
                    out.append(_response("503 Service Unavailable", b'{"status":"blip"}', b"application/json"))
                else:
                    out.append(_response("200 OK", HEALTH_BODY, b"application/json"))
            elif path == b"/__blip":
                out.append(_response("200 OK", self.counters.blip(query), b"text/plain"))
            elif path == b"/__count":
                out.append(_response("200 OK", self.counters.stub_status(), b"text/plain"))
            else:
                out.append(_response("404 Not Found", b"not found\n", b"text/plain"))
        if out and self.transport is not None:
            if close:
                out[-1] = out[-1].replace(b"Connection: keep-alive", b"Connection: close", 1)
            self.transport.write(b"".join(out))
            if close:
                self.transport.close()


async def serve_builtin(port: int) -> None:
    """Serve forever with the raw asyncio protocol."""
    counters = Counters()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _HttpProtocol(counters), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def serve_uvicorn(port: int) -> None:
    """Serve forever with uvicorn and a two-route ASGI app."""
    import uvicorn

    counters = Counters()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        counters.requests += 1
        if scope["path"] == "/health":
            body, ctype = HEALTH_BODY, b"application/json"
        else:
            body, ctype = counters.stub_status(), b"text/plain"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off",
                backlog=4096)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=["builtin", "uvicorn"], default="builtin")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.kind == "builtin":
        asyncio.run(serve_builtin(args.port))
    else:
        serve_uvicorn(args.port)


if __name__ == "__main__":
    main()
