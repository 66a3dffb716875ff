"""The daemon's own HTTP endpoints: /metrics, /healthz, /readyz, /status and the status page at / (page.py)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from monitor.metrics import CONTENT_TYPE, Metrics
from monitor.page import render_page
from monitor.state import State

HEALTH_MAX_SILENCE_S = 30.0


def create_app(
    state: State, metrics: Metrics, service: Callable[[], str], clock: Callable[[], float] = time.time
) -> Starlette:
    """Build the ASGI app; it reads the live State and Metrics, so it survives config reloads.

    `clock` (epoch seconds) is what the page counts relative times ("3 min ago") from.
    """

    async def metrics_endpoint(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for chunk in metrics.render_chunks():
                yield chunk

        return StreamingResponse(body(), media_type=CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        ok, reason = state.healthy(HEALTH_MAX_SILENCE_S)
        return PlainTextResponse(reason + "\n", status_code=200 if ok else 503)

    async def readyz(request: Request) -> Response:
        ok, reason = state.ready()
        return PlainTextResponse(reason + "\n", status_code=200 if ok else 503)

    async def status(request: Request) -> Response:
        return JSONResponse(state.status())

    async def index(request: Request) -> Response:
        return HTMLResponse(render_page(state.status(), service(), state.ready()[1], now=clock()))

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/status", status),
            Route("/", index),
        ]
    )


class EmbeddedServer(uvicorn.Server):
    """uvicorn serving inside the daemon's event loop; the daemon, not uvicorn, owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install no signal handlers."""
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6); raises OSError when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def build_server(app: Starlette, host: str, port: int) -> EmbeddedServer:
    """A uvicorn server for `app` whose logs go through our logging pipeline."""
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off",
        timeout_graceful_shutdown=1, server_header=False,
    )
    return EmbeddedServer(config)


__all__ = ["EmbeddedServer", "bind_socket", "build_server", "create_app", "render_page"]
