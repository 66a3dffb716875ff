"""Everything a probe may use (HTTP clients, limits, targets, clock), built once and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import http.cookiejar
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field

import httpx

from monitor.core.clock import Clock, SystemClock
from monitor.core.config import Config, Identity, Target
from monitor.core.secrets import Redactor, collect_secrets
from probes.wire import Prepared, WireTransport


class _NoCookies(http.cookiejar.CookiePolicy):
    """Keep no cookie and send none: every probe starts without state, as blackbox_exporter's do.

    A session cookie set by one response and sent with later probes would let an auth_contract "no token"
    request pass as authenticated, or hide a broken login.
    """

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        """Store nothing."""
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        """Send nothing."""
        return False

    def domain_return_ok(self, domain: str, request: object) -> bool:
        """Send nothing."""
        return False

    def path_return_ok(self, path: str, request: object) -> bool:
        """Send nothing."""
        return False


class Slots:
    """One target's request slots: at most `capacity` requests admitted at once, first come, first served.

    The runner admits a run by taking as many slots as the run sends requests (`Kind.requests`, at most all of
    them) and starts the run's deadline only then, so time spent waiting here is never counted as a target's
    timeout. A waiter that needs more slots than are free holds the line: nobody overtakes it, so a run of an
    `auth_contract` check (five requests) is not starved by a stream of one-request runs.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        # (slots wanted, future); a waiter that gave up leaves its future cancelled here and is dropped when it
        # reaches the head, so giving up is O(1) even with thousands waiting.
        self._line: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._waiting = 0
        self._queued = 0  # slots wanted by the live waiters
        self._hold = 0.0  # how long a run holds its slots, smoothed (0: not known yet)

    @property
    def free(self) -> int:
        """Slots not held by anyone right now."""
        return self._free

    @property
    def waiting(self) -> int:
        """Runs waiting in line for slots."""
        return self._waiting

    async def acquire(self, wanted: int = 1, *, deadline: float | None = None) -> bool:
        """Take `wanted` slots (at most `capacity`), waiting in line until `deadline` (event-loop time; None: as
        long as it takes). True: the slots are held, give them back with `release`; False: the deadline came
        first, or the line ahead cannot drain before it at the measured pace, and nothing is held."""
        wanted = max(1, min(wanted, self.capacity))
        if self._waiting == 0 and self._free >= wanted:
            self._free -= wanted
            return True
        loop = asyncio.get_running_loop()
        if deadline is not None:
            # Under overload a waiter that cannot make it is refused at once rather than after a futile wait:
            # the line ahead drains at capacity slots per hold time.
            drain = (self._queued + wanted) / self.capacity * self._hold
            if loop.time() + drain >= deadline:
                return False
        future: asyncio.Future[None] = loop.create_future()
        self._line.append((wanted, future))
        self._waiting += 1
        self._queued += wanted
        try:
            if deadline is None:
                await future
            else:
                async with asyncio.timeout_at(deadline):
                    await future
        except TimeoutError:
            if _granted(future):  # handed over in the same instant the deadline passed: it is ours
                return True
            self._give_up(future, wanted)
            return False
        except BaseException:
            if _granted(future):
                self.release(wanted)
            else:
                self._give_up(future, wanted)
            raise
        return True

    def release(self, count: int, held: float | None = None) -> None:
        """Give back slots taken with `acquire` (the same count it was asked for, capped at capacity); `held`:
        how long they were held, which paces the refusal of hopeless waiters (smoothed, 1/8 per run)."""
        self._free = min(self.capacity, self._free + max(1, min(count, self.capacity)))
        if held is not None and held >= 0:
            self._hold = held if self._hold == 0 else self._hold + (held - self._hold) / 8
        self._serve()

    def _give_up(self, future: asyncio.Future[None], wanted: int) -> None:
        """A waiter that was not granted leaves (its future may already be cancelled with its task)."""
        if not future.done():
            future.cancel()
        self._waiting -= 1
        self._queued -= wanted
        self._serve()  # it may have been the head that held the line

    def _serve(self) -> None:
        line = self._line
        while line:
            wanted, future = line[0]
            if future.done():  # gave up earlier
                line.popleft()
                continue
            if wanted > self._free:
                return
            line.popleft()
            self._free -= wanted
            self._waiting -= 1
            self._queued -= wanted
            future.set_result(None)


def _granted(future: asyncio.Future[None]) -> bool:
    return future.done() and not future.cancelled()


class Wire:
    """How much of a timed-out request's budget one run spent inside pam-monitor before the request reached the
    network (waiting for one of the resolver's threads, or behind a busy event loop).

    The runner opens one per run (`watch_wire`); `_http.fetch` reports every request that timed out, with the
    moment the transport saw it reach the wire (`probes.wire.Trace.wire_at`). A timeout counts only time on the
    wire: a request that reached it late, or never, timed out because of the monitor.
    """

    def __init__(self) -> None:
        self.lost = 0.0
        """The largest share (0 to 1) of a timed-out request's budget spent before it was on the wire."""

    def timed_out(self, started: float, on_wire: float | None, deadline: float) -> None:
        """A request started at `started` (event-loop time) timed out at `deadline`; it reached the wire at
        `on_wire` (None: never)."""
        budget = deadline - started
        spent = (deadline if on_wire is None else on_wire) - started
        share = 1.0 if budget <= 0 else min(1.0, max(0.0, spent / budget))
        self.lost = max(self.lost, share)


_WIRE: contextvars.ContextVar[Wire | None] = contextvars.ContextVar("pam_monitor_wire", default=None)


@contextlib.contextmanager
def watch_wire() -> Iterator[Wire]:
    """Collect, for the run in this task (and the tasks it starts), how late its timed-out requests reached the
    wire. A context variable, so no probe signature carries it."""
    wire = Wire()
    token = _WIRE.set(wire)
    try:
        yield wire
    finally:
        _WIRE.reset(token)


def current_wire() -> Wire | None:
    """The running run's Wire, or None outside a runner (a probe called directly)."""
    return _WIRE.get()


class RefusalMemory:
    """Learned refusal shapes by key (probes/_refusal.py), kept for the life of the process.

    The daemon hands `build_deps` one that also writes them to the state database in `state_dir` (the same object
    across reloads), so a restart does not learn them again; `pam-monitor check` keeps them in memory only. A
    store that cannot write must still remember: `put` never raises.
    """

    def __init__(self, initial: Mapping[str, str] | None = None) -> None:
        self._values: dict[str, str] = dict(initial or {})

    def get(self, key: str) -> str | None:
        """The stored value, or None."""
        return self._values.get(key)

    def put(self, key: str, value: str) -> None:
        """Remember `value` under `key`."""
        self._values[key] = value


@dataclass
class Deps:
    """Shared resources for probes. One instance per loaded config; `aclose()` releases it."""

    targets: Mapping[str, Target]
    body_limit: int
    user_agent: str
    # Requests admitted at once per target (http.max_in_flight); see slots_for.
    max_in_flight: int = 16
    clock: Clock = field(default_factory=SystemClock)
    # Who the signed-in checks act as (top-level `identities`); their tokens are cached in `resources`.
    identities: Mapping[str, Identity] = field(default_factory=dict)
    _slots: dict[str, Slots] = field(default_factory=dict)
    # http.keep_alive: reuse connections (False: a fresh connection, resolve and TLS handshake every request).
    keep_alive: bool = False
    _transports: dict[tuple[bool, str | None] | None, WireTransport] = field(default_factory=dict)
    # Requests as wire bytes, built once per spec and headers (probes/_http.py `_prepared`).
    prepared: dict[tuple[str, int, tuple[tuple[str, str], ...]], tuple[object, Prepared]] = field(default_factory=dict)
    _clients: dict[tuple[bool, str | None], httpx.AsyncClient] = field(default_factory=dict)
    # Long-lived resources owned by probe modules, keyed by check name (the db probe's pools) or
    # "identity/<name>" (an identity's token, probes/identity.py).
    resources: dict[str, object] = field(default_factory=dict)
    # The configured secrets' redactor (monitor.core.secrets), for text cut from a body: it runs before the cut.
    redact: Callable[[str], str] | None = None
    # Endpoints' own refusal shapes, learned from their first good runs (probes/_refusal.py).
    refusals: RefusalMemory = field(default_factory=RefusalMemory)
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def transport_for(self, target: Target) -> WireTransport:
        """The shared transport for a target's scheme and TLS settings (never one per probe).

        Plain-HTTP targets share one transport without a TLS context (building one reads the CA bundle).
        Nothing in them keeps cookies, follows redirects or reads proxy variables: every probe starts bare.
        """
        https = (target.base_url or "").startswith("https://")
        key = (target.verify_tls, str(target.ca_file) if target.ca_file else None) if https else None
        transport = self._transports.get(key)
        if transport is None:
            context = _tls_context(target) if https else None
            transport = WireTransport(context, keep_alive=self.keep_alive, max_idle=max(self.max_in_flight, 1))
            self._transports[key] = transport
        return transport

    def client_for(self, target: Target) -> httpx.AsyncClient:
        """An httpx client for a target's TLS settings, for identity sign-ins (probes/identity.py); probes' own
        requests go through `transport_for`. Made on first use, never one per request."""
        key = (target.verify_tls, str(target.ca_file) if target.ca_file else None)
        client = self._clients.get(key)
        if client is None:
            verify: bool | ssl.SSLContext = target.verify_tls
            if target.ca_file is not None and target.verify_tls:
                verify = ssl.create_default_context(cafile=str(target.ca_file))
            client = httpx.AsyncClient(
                verify=verify,
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": self.user_agent},
                cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            )
            self._clients[key] = client
        return client

    def slots_for(self, target_name: str) -> Slots:
        """The request slots of one target (`max_in_flight` of them), made on first use.

        One set per target, not one for all: a hanging target then holds only its own slots until its timeouts,
        and checks of healthy targets never wait behind it. The runner takes them before a run's deadline starts
        (admission); probes and `_http.fetch` never wait for a slot themselves.
        """
        slots = self._slots.get(target_name)
        if slots is None:
            slots = self._slots[target_name] = Slots(self.max_in_flight)
        return slots

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Register a coroutine to run when these deps are closed (pools, sessions)."""
        self._closers.append(closer)

    async def aclose(self) -> None:
        """Close every client and registered resource; never raises."""
        # Closing is best effort: a resource that fails to close must not keep the others open.
        for transport in self._transports.values():
            with contextlib.suppress(Exception):
                await transport.aclose()
        self._transports.clear()
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                await closer()
        self._closers.clear()


def build_deps(config: Config, clock: Clock | None = None, refusals: RefusalMemory | None = None) -> Deps:
    """Build the shared resources for a config (`refusals`: learned refusal shapes to share across reloads)."""
    return Deps(
        targets=dict(config.targets),
        body_limit=config.http.body_limit,
        user_agent=config.http.user_agent,
        max_in_flight=config.http.max_in_flight,
        keep_alive=config.http.keep_alive,
        clock=clock or SystemClock(),
        identities=dict(config.identities),
        redact=Redactor(collect_secrets(config)).scrub,
        refusals=refusals if refusals is not None else RefusalMemory(),
    )


def _tls_context(target: Target) -> ssl.SSLContext:
    """Verification as the target says: the system CAs, its ca_file, or none at all (verify_tls: false)."""
    if not target.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)
    context.set_alpn_protocols(["http/1.1"])
    return context
