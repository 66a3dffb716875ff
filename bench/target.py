"""Fallback benchmark targets when nginx is missing: a raw asyncio HTTP/1.1 server or uvicorn, on 127.0.0.1.

Both answer `GET /health` with a static JSON 200 (keep-alive) and `GET /__count` with nginx stub_status-shaped
counters ("server accepts handled requests\\n A A R"), so bench/run.py reads every target the same way.
Run: `python -m bench.target --kind builtin|uvicorn --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

HEALTH_BODY = b'{"status":"healthy"}'


class Counters:
    """Connections accepted and requests served, for /__count."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0

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
        # Bounded by the data received: each turn consumes one complete request head.
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            parts = head.split(b" ", 2)
            path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
            self.counters.requests += 1
            if path == b"/health":
                out.append(_response("200 OK", HEALTH_BODY, b"application/json"))
            elif path == b"/__count":
                out.append(_response("200 OK", self.counters.stub_status(), b"text/plain"))
            else:
                out.append(_response("404 Not Found", b"not found\n", b"text/plain"))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


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
