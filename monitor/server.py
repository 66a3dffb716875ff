"""The daemon's own HTTP endpoints: /metrics, /healthz, /readyz, /status and a small HTML page at /."""

from __future__ import annotations

import contextlib
import html
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from monitor import __version__
from monitor.metrics import CONTENT_TYPE, Metrics
from monitor.state import State

HEALTH_MAX_SILENCE_S = 30.0


def create_app(state: State, metrics: Metrics, service: Callable[[], str]) -> Starlette:
    """Build the ASGI app; it reads the live State and Metrics, so it survives config reloads."""

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
        return HTMLResponse(render_page(state.status(), service(), state.ready()[1]))

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/status", status),
            Route("/", index),
        ]
    )


_OUTCOME_COLOURS = {"ok": "#1a7f37", "slow": "#9a6700", None: "#6e7781"}


def render_page(doc: dict[str, Any], service: str, readiness: str) -> str:
    """A self-refreshing HTML table of checks and active alerts; every value is HTML-escaped."""
    esc = html.escape
    rows = []
    for check in doc["checks"]:
        outcome = check["outcome"]
        colour = _OUTCOME_COLOURS.get(outcome, "#cf222e")
        duration = "" if check["duration_s"] is None else f"{check['duration_s'] * 1000:.0f} ms"
        rows.append(
            "<tr>"
            f"<td>{esc(check['name'])}</td><td>{esc(check['kind'])}</td>"
            f"<td style='color:{colour};font-weight:bold'>{esc(str(outcome or 'pending'))}</td>"
            f"<td>{esc(str(check['status_code'] or ''))}</td><td>{duration}</td>"
            f"<td>{esc(check['message'])}</td><td>{esc(str(check['finished_at'] or ''))}</td>"
            "</tr>"
        )
    alert_rows = []
    for alert in doc.get("alerts", []):
        labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.get("labels", {}).items()) if k != "alertname")
        alert_rows.append(
            f"<tr><td>{esc(str(alert.get('alertname', '')))}</td><td>{esc(str(alert.get('state', '')))}</td>"
            f"<td>{esc(labels)}</td><td>{esc(str(alert.get('since', '')))}</td></tr>"
        )
    alerts_html = (
        "<table><tr><th>alert</th><th>state</th><th>labels</th><th>since</th></tr>" + "".join(alert_rows) + "</table>"
        if alert_rows else "<p>No active alerts.</p>"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>pam-monitor: {esc(service)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}}th{{background:#f6f8fa}}</style>
</head><body>
<h1>pam-monitor: {esc(service)}</h1>
<p>Readiness: {esc(readiness)}. Version {esc(__version__)}.
<a href="/status">/status</a> · <a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> ·
<a href="/readyz">/readyz</a></p>
<h2>Checks</h2>
<table><tr><th>check</th><th>kind</th><th>outcome</th><th>status</th><th>duration</th><th>message</th>
<th>finished</th></tr>{"".join(rows)}</table>
<h2>Active alerts</h2>
{alerts_html}
</body></html>
"""


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
