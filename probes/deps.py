"""Everything a probe may use (HTTP transports and clients, the cookie policy, targets, identities, clock, the
resources probe modules keep between runs), built once per config and passed down. Admission to a target's request
slots is the runner's (monitor/admission.py); the wire-time account of a run is monitor/core/wiretime.py."""

from __future__ import annotations

import contextlib
import http.cookiejar
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpx

from monitor.core.clock import Clock, SystemClock
from monitor.core.config import Config, Identity, Target
from monitor.core.secrets import Redactor, collect_secrets
from probes.wire import Prepared, Proxy, WireTransport


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
    # Requests admitted at once per target (http.max_in_flight): the runner's admission (monitor/admission.py)
    # holds that many slots per target; here it bounds each transport's idle connections.
    max_in_flight: int = 16
    clock: Clock = field(default_factory=SystemClock)
    # Who the signed-in checks act as (top-level `identities`); their tokens are cached in `resources`.
    identities: Mapping[str, Identity] = field(default_factory=dict)
    # http.keep_alive: reuse connections (False: a fresh connection, resolve and TLS handshake every request).
    keep_alive: bool = False
    _transports: dict[tuple[tuple[bool, str | None] | None, str | None], WireTransport] = field(default_factory=dict)
    # Requests as wire bytes, built once per spec and headers (probes/_http.py `_prepared`).
    prepared: dict[tuple[str, int, tuple[tuple[str, str], ...]], tuple[object, Prepared]] = field(default_factory=dict)
    _clients: dict[tuple[bool, str | None, str | None], httpx.AsyncClient] = field(default_factory=dict)
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
        A target's proxy_url gets its own transport. Nothing in them keeps cookies, follows redirects or reads
        proxy variables: every probe starts bare.
        """
        https = (target.base_url or "").startswith("https://")
        tls = (target.verify_tls, str(target.ca_file) if target.ca_file else None) if https else None
        key = (tls, target.proxy_url)
        transport = self._transports.get(key)
        if transport is None:
            context = _tls_context(target) if https else None
            proxy = Proxy.from_url(target.proxy_url) if target.proxy_url else None
            transport = WireTransport(context, keep_alive=self.keep_alive, max_idle=max(self.max_in_flight, 1),
                                      proxy=proxy)
            self._transports[key] = transport
        return transport

    def client_for(self, target: Target) -> httpx.AsyncClient:
        """An httpx client for a target's TLS settings, for identity sign-ins (probes/identity.py); probes' own
        requests go through `transport_for`. Made on first use, never one per request; through the target's
        proxy_url when it has one."""
        key = (target.verify_tls, str(target.ca_file) if target.ca_file else None, target.proxy_url)
        client = self._clients.get(key)
        if client is None:
            verify: bool | ssl.SSLContext = target.verify_tls
            if target.ca_file is not None and target.verify_tls:
                verify = ssl.create_default_context(cafile=str(target.ca_file))
            client = httpx.AsyncClient(
                verify=verify,
                follow_redirects=False,
                trust_env=False,
                proxy=target.proxy_url,
                headers={"User-Agent": self.user_agent},
                cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            )
            self._clients[key] = client
        return client

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
