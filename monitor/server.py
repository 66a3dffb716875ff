"""The daemon's own HTTP endpoints: /metrics, /healthz, /readyz, /status and the status page at / (page.py).

Probing never waits on serving:
- The endpoints run on their own thread and event loop (`ServerThread`): a flood of scrapers queues there, never
  in front of a probe's callbacks (measured in bench/README.md: 200 concurrent scrapers against 20 checks).
- /metrics is streamed in pieces of ~48 KB (monitor/metrics.py), gzip-compressed when the scraper asks, nothing
  of a lone scrape kept; scrapes that come within `METRICS_TTL` of the one before share one render, kept for
  that long: at most two renders per TTL.
- At most `MAX_HEAVY` /metrics, /status and / responses are in progress at once; the others get 503 with
  `Retry-After: 1` at once. /healthz and /readyz are never refused (they are cheap and orchestrators need them).
- The alert engine lives on the daemon's loop: /status asks it through `LoopCall`, at most once per `ALERTS_TTL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from monitor.core.secrets import Redactor, collect_secrets
from monitor.metrics import CONTENT_TYPE, Metrics
from monitor.state import State

if TYPE_CHECKING:
    from monitor.core.config import Config

log = structlog.get_logger("pam_monitor.server")

HEALTH_MAX_SILENCE_S = 30.0
METRICS_TTL = 0.5
"""Seconds a rendered /metrics body is served again to later scrapers (Prometheus scrapes every 15 s or so)."""
MAX_HEAVY = 8
"""Concurrent /metrics, /status and / responses in progress; beyond that, 503 with Retry-After: 1."""
ALERTS_TTL = 0.5
ALERTS_TIMEOUT = 1.0
HEAVY_PATHS = frozenset({"/metrics", "/status", "/"})

AlertsSource = Callable[[], Awaitable[list[dict[str, Any]]]]
"""Where /status and / read the active alerts from (an async call, so it can hop to the daemon's loop)."""


class _Shared:
    """/metrics pieces, rendered once for all the scrapes that come within `ttl` seconds of the one before them.

    A lone scrape (none in the `ttl` before it: Prometheus every 15 s) streams a render of its own, piece by
    piece, and nothing of it is kept, so the allocator never holds a whole scrape (4 KB a check). Scrapes that
    come closer together (a flood, several Prometheus replicas) share one render, kept for `ttl` seconds and then
    let go: however many scrapers, at most two renders per `ttl`.
    """

    def __init__(self, render: Callable[[], Iterable[bytes]], ttl: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._render = render
        self._ttl = ttl
        self._monotonic = monotonic
        self._value: tuple[bytes, ...] | None = None
        self._at = 0.0
        self._last: float | None = None

    def get(self) -> Iterable[bytes]:
        """The pieces of one scrape: the shared render while it is fresh, else a new one (call it on an event
        loop: a shared render is dropped `ttl` seconds after it was made)."""
        now = self._monotonic()
        previous, self._last = self._last, now
        if self._value is not None and now - self._at < self._ttl:
            return self._value
        self._value = None
        if previous is None or now - previous >= self._ttl:
            return self._render()
        self._value, self._at = tuple(self._render()), now
        asyncio.get_running_loop().call_later(self._ttl, self._drop, now)
        return self._value

    def _drop(self, rendered_at: float) -> None:
        if self._value is not None and self._at == rendered_at:
            self._value = None


class _Pieces(Response):
    """A streamed 200 response of ready pieces (the /metrics body), sent straight through the ASGI `send`.

    Starlette's StreamingResponse runs each response in an anyio task group that also listens for the client's
    disconnect; that costs a task per scrape and, on the first one, importing anyio's asyncio backend (1.2 MB
    resident). Here a client that went away costs at most the rest of a render: uvicorn drops what is sent to a
    closed connection.
    """

    media_type = CONTENT_TYPE

    def __init__(self, pieces: Iterable[bytes], *, gzip: bool = False) -> None:
        self._pieces = pieces
        self._gzip = gzip
        self.status_code = 200
        self.background = None
        self.init_headers({"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzip
                          else {"Vary": "Accept-Encoding"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the head, each piece as it comes (compressed on the way when asked), then the end of the body."""
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        # Level 1: a fifth of the bytes at a few ms for 1,000 checks; higher levels cost several times the CPU
        # (on the server's thread, which shares the interpreter with the probes) for a few percent less.
        packer = zlib.compressobj(1, zlib.DEFLATED, 31) if self._gzip else None
        for piece in self._pieces:
            body = packer.compress(piece) if packer is not None else piece
            if body:
                await send({"type": "http.response.body", "body": body, "more_body": True})
        tail = packer.flush() if packer is not None else b""
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value allows gzip (Prometheus sends `gzip`; `gzip;q=0` refuses it)."""
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().lower().removeprefix("q=").strip()
            try:
                return not q or float(q) > 0
            except ValueError:
                return False
    return False


class _Busy:
    """ASGI middleware: at most `limit` responses on `paths` in progress; the rest get 503 + Retry-After at once."""

    def __init__(self, app: ASGIApp, limit: int, paths: frozenset[str]) -> None:
        self.app = app
        self.limit = limit
        self.paths = paths
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve, or refuse quickly when too many heavy responses are in progress."""
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            refusal = PlainTextResponse("busy: too many concurrent requests; retry in a second\n", status_code=503,
                                        headers={"Retry-After": "1"})
            await refusal(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


def _no_query(path: str) -> str:
    # A query string is where an API key would be written (`?key=${KEY}`), and the path alone says where to look.
    return path.split("?", 1)[0]


def describe_request(check: Any, details: Mapping[str, Any]) -> str:
    """What a check asks, for a person reading why it fails: `GET /health`, `step read: GET /api/...`, `database
    target database as role authenticated`. Never a base URL, a DSN, a header or a query string (they may hold
    secrets)."""
    step = details.get("step")
    for candidate in getattr(check, "steps", None) or ():
        if candidate.name == step:
            return f"step {step}: {candidate.method} {_no_query(candidate.path)}"
    path = getattr(check, "path", None)
    if path:
        return f"{getattr(check, 'method', None) or 'GET'} {_no_query(path)}"
    if check.kind == "db":
        role = getattr(check, "as_role", None)
        return f"database target {check.target}" + (f" as role {role}" if role else "")
    if check.kind == "postgrest":
        return f"GET {check.rest_path}/<table> for {', '.join(check.required_tables)}"
    return f"target {check.target}"


class _Requests:
    """Each check's describe_request, scrubbed of the config's secrets, remembered per config (a reload makes a new
    one)."""

    def __init__(self, config: Callable[[], Config] | None) -> None:
        self._config = config
        self._for: tuple[int, Redactor, dict[str, Any]] | None = None

    def __call__(self, name: str, details: Mapping[str, Any]) -> str | None:
        if self._config is None:
            return None
        config = self._config()
        if self._for is None or self._for[0] != id(config):
            self._for = (id(config), Redactor(collect_secrets(config)), {c.name: c for c in config.checks})
        _, redactor, by_name = self._for
        check = by_name.get(name)
        return None if check is None else redactor.scrub(describe_request(check, details))


def status_document(doc: dict[str, Any], requests: Callable[[str, Mapping[str, Any]], str | None]) -> dict[str, Any]:
    """/status from State.status(): each check with `request` (what it asks) and, when not ok, `hint`
    (page.RUNBOOK); `dead_mans_switch` (MonitorWatchdog, which fires all the time by design: `being sent` or `not
    sent`); and a `summary` counting the checks and the alerts other than the dead man's switch. `alerts` still lists
    MonitorWatchdog, as pam_monitor_alerts_firing counts it, so a scraper and /status agree."""
    from monitor.page import outcome_level, runbook_hint, split_alerts

    shown, beat = split_alerts(doc.get("alerts") or [])
    for entry in doc["checks"]:
        request = requests(str(entry.get("name")), entry.get("details") or {})
        if request:
            entry["request"] = request
        hint = runbook_hint(entry.get("outcome"))
        if hint:
            entry["hint"] = hint
    levels = [outcome_level(c.get("outcome")) for c in doc["checks"]]
    firing = sum(1 for a in shown if a.get("state") == "firing")
    return {
        **doc,
        "dead_mans_switch": {"state": "being sent", "since": beat[0].get("since")} if beat else {"state": "not sent"},
        "summary": {"checks": len(levels), "failing": levels.count("bad"), "slow": levels.count("warn"),
                    "not_run_yet": levels.count("idle"), "alerts_firing": firing,
                    "alerts_pending": len(shown) - firing},
    }


def create_app(
    state: State, metrics: Metrics, service: Callable[[], str], clock: Callable[[], float] = time.time, *,
    alerts: AlertsSource | None = None, metrics_ttl: float = METRICS_TTL, max_heavy: int = MAX_HEAVY,
    config: Callable[[], Config] | None = None,
    heartbeat: Callable[[Request], Awaitable[Response]] | None = None,
) -> Starlette:
    """Build the ASGI app; it reads the live State and Metrics, so it survives config reloads.

    `clock` (epoch seconds) is what the page counts relative times ("3 min ago") from. `alerts` (default: the
    state's own provider, called in place) gives the active alerts for /status and the page. `config` (the live
    one) lets /status and the page say what each check asks (method and path, or the journey's step).
    state's own provider, called in place) gives the active alerts for /status and the page. `heartbeat`
    (monitor/heartbeat.py) answers `/heartbeat/<check>` and `/heartbeat/<check>/fail` for jobs.
    """
    requests = _Requests(config)
    scrape = _Shared(metrics.render_chunks, metrics_ttl)

    async def active_alerts() -> list[dict[str, Any]] | None:
        return await alerts() if alerts is not None else None

    async def metrics_endpoint(request: Request) -> Response:
        return _Pieces(scrape.get(), gzip=accepts_gzip(request.headers.get("accept-encoding", "")))

    async def healthz(request: Request) -> Response:
        ok, reason = state.healthy(HEALTH_MAX_SILENCE_S)
        return PlainTextResponse(reason + "\n", status_code=200 if ok else 503)

    async def readyz(request: Request) -> Response:
        ok, reason = state.ready()
        return PlainTextResponse(reason + "\n", status_code=200 if ok else 503)

    async def status(request: Request) -> Response:
        return JSONResponse(status_document(state.status(await active_alerts()), requests))

    async def index(request: Request) -> Response:
        from monitor.page import render_page  # on the first visit: a daemon nobody looks at never loads it

        doc = status_document(state.status(await active_alerts()), requests)
        return HTMLResponse(render_page(doc, service(), state.ready()[1], now=clock()))

    async def beat(request: Request) -> Response:  # a function: Starlette runs a callable object as raw ASGI
        assert heartbeat is not None
        return await heartbeat(request)

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/status", status),
            Route("/", index),
            *([Route("/heartbeat/{check}", beat, methods=["GET", "POST"]),
               Route("/heartbeat/{check}/fail", beat, methods=["GET", "POST"])] if heartbeat else []),
        ],
        middleware=[Middleware(_Busy, limit=max_heavy, paths=HEAVY_PATHS)],
    )


class LoopCall:
    """Call `fn` on the daemon's event loop from another thread's loop, reusing the answer for `ttl` seconds.

    The alert engine is not thread-safe; asking it on its own loop keeps it that way, and the TTL bounds what a
    flood of /status requests costs the probing loop. When that loop does not answer within `timeout`, the last
    answer is returned (an empty list before the first).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], list[dict[str, Any]]], *,
                 ttl: float = ALERTS_TTL, timeout: float = ALERTS_TIMEOUT) -> None:
        self._loop = loop
        self._fn = fn
        self._ttl = ttl
        self._timeout = timeout
        self._value: list[dict[str, Any]] | None = None
        self._at = 0.0
        self._pending: asyncio.Future[list[dict[str, Any]]] | None = None

    async def __call__(self) -> list[dict[str, Any]]:
        """The answer, fresh within the TTL."""
        if self._value is not None and time.monotonic() - self._at < self._ttl:
            return self._value
        if self._pending is None or self._pending.done():
            try:
                future = asyncio.run_coroutine_threadsafe(self._ask(), self._loop)
            except RuntimeError:  # the daemon's loop is closed (shutting down)
                return self._value or []
            self._pending = asyncio.wrap_future(future)
        try:
            value = await asyncio.wait_for(asyncio.shield(self._pending), self._timeout)
        except Exception:  # a stalled or stopped loop, or the engine failing: keep the last answer
            return self._value or []
        self._value, self._at = value, time.monotonic()
        return value

    async def _ask(self) -> list[dict[str, Any]]:
        return self._fn()


class EmbeddedServer(uvicorn.Server):
    """uvicorn serving inside the daemon; the daemon, not uvicorn, owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install no signal handlers."""
        yield


class ServerThread:
    """An EmbeddedServer on its own thread and event loop, so that serving never delays a probe."""

    def __init__(self, server: EmbeddedServer, sock: socket.socket) -> None:
        self.server = server
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="pam-monitor-http", daemon=True)

    def start(self) -> None:
        """Start serving on the bound socket."""
        self._thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self._sock]))
        except Exception as exc:
            log.error("server.crashed", error_type=type(exc).__name__, error=str(exc))

    @property
    def alive(self) -> bool:
        """Whether the server thread is still running."""
        return self._thread.is_alive()

    async def stop(self, timeout: float) -> None:
        """Ask uvicorn to finish (open responses get a second) and wait up to `timeout` for the thread."""
        self.server.should_exit = True
        await asyncio.to_thread(self._thread.join, max(0.1, timeout))


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
        timeout_graceful_shutdown=1, server_header=False, ws="none",
    )
    return EmbeddedServer(config)


__all__ = ["EmbeddedServer", "LoopCall", "ServerThread", "bind_socket", "build_server", "create_app"]
