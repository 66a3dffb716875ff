"""The probes' HTTP/1.1 transport: resolve, connect, TLS, send, pool or close; phase timings and TLS facts.

httpx builds a request's bytes (`prepare`); the rest is ours. httptools (the C parser uvicorn uses) parses the
answer, after probes/_head.py made its head plain (probes/_exchange.py). Failures raise the probes/_errors.py types
with the socket, TLS or DNS error as their cause; probes/_failures.py turns them into outcomes.

A name with several addresses is connected to as RFC 8305 (Happy Eyeballs) says: families interleaved, the next
address tried 250 ms after the previous one unless that one connected, the first to connect wins; one address
that drops SYNs costs 250 ms, not the whole timeout. Running out of the monitor's own resources at socket() or
connect() (EMFILE, EADDRNOTAVAIL...) raises LocalExhausted, which the runner counts as a skipped run.

With a `proxy` (a target's proxy_url) every connection goes to the proxy: https targets through an HTTP CONNECT
tunnel, http targets as absolute-form requests, as blackbox_exporter's proxy_url does. Proxy environment
variables are never read.

A request never retries: a connection reset or closed before the answer is reported, since a monitor must see it.
With `keep_alive` off every request opens its own connection (resolve, connect, TLS each time, as
blackbox_exporter does) and says `Connection: close`; with it on, idle connections are reused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from monitor.core.results import TlsFacts
from probes import _socket, _tls_chain
from probes._errors import (
    ConnectFailed,
    ProxyFailed,
    ResolveFailed,
    TlsFailed,
    UnsupportedScheme,
    local_exhaustion,
)
from probes._exchange import Exchange, Trace

IDLE_LIMIT_S = 1.0
"""A pooled connection idle longer than this is closed rather than reused: servers drop idle connections after a
few seconds (gunicorn 2 s, uvicorn and Node 5 s), and one dropped just as a request goes out would read as a
failure of the target."""
LINGER_S = 1.0
"""How long a finished one-shot connection waits for the server to close first before closing itself."""
ATTEMPT_DELAY_S = 0.25
"""RFC 8305's Connection Attempt Delay: the next address of a name is tried this long after the previous one
started, unless that one connected (or failed sooner, which starts the next at once)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _name(parts: Any) -> str | None:
    if not parts:
        return None
    return ",".join(f"{_SHORT.get(k, k)}={v}" for rdn in parts for k, v in rdn)


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
          "localityName": "L", "stateOrProvinceName": "ST", "domainComponent": "DC"}


Decoded = tuple[float | None, str | None, str | None]
"""One certificate's notAfter (Unix seconds), subject and issuer."""
DECODED_MAX = 4096
"""Certificates whose decoding a transport keeps (a target presents the same few on every handshake)."""


def _decode(info: Any) -> Decoded:
    not_after = info.get("notAfter") if isinstance(info, dict) else None
    return (ssl.cert_time_to_seconds(not_after) if not_after else None, _name(info.get("subject")),
            _name(info.get("issuer")))


def _chain(ssl_object: ssl.SSLObject, verified: bool, cache: dict[Any, Decoded]) -> list[Decoded]:
    """The presented chain (leaf first), or the chain OpenSSL verified, each certificate decoded.

    The ssl module decodes a peer certificate only once verified (`getpeercert()` is {} with verify_tls: false);
    the chains (probes/_tls_chain.py) hold every certificate either way; without them only the verified leaf is
    known. Decoding (the ssl module's date parsing above all) costs ~10 us a certificate, so `cache` keeps it per
    certificate (equal certificates compare equal, a renewed one does not).
    """
    try:
        certificates = _tls_chain.chain(ssl_object, verified)
    except (ssl.SSLError, ValueError, AttributeError):
        return []
    if certificates is None:
        leaf = ssl_object.getpeercert()
        return [_decode(leaf)] if leaf else []
    out = []
    try:
        for cert in certificates:
            decoded = cache.get(cert)
            if decoded is None:
                if len(cache) >= DECODED_MAX:
                    cache.clear()
                decoded = cache[cert] = _decode(cert.get_info())
            out.append(decoded)
    except (ssl.SSLError, ValueError, AttributeError):
        return []
    return out


def tls_facts(transport: asyncio.BaseTransport, cache: dict[Any, Decoded] | None = None) -> TlsFacts | None:
    """The negotiated version, the leaf certificate's notAfter/subject/issuer, and the earliest notAfter of the
    presented chain and of the verified chain (blackbox_exporter's two expiries), of a TLS connection.

    `cache` keeps decoded certificates between calls (a WireTransport passes its own)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cache = {} if cache is None else cache
    presented = _chain(ssl_object, False, cache)
    leaf = presented[0] if presented else (None, None, None)
    expiries = [c[0] for c in presented if c[0] is not None]
    verified = [c[0] for c in _chain(ssl_object, True, cache) if c[0] is not None] \
        if ssl_object.context.verify_mode != ssl.CERT_NONE else []
    return TlsFacts(ssl_object.version(), leaf[0], leaf[1], leaf[2],
                    earliest_expiry=min(expiries) if expiries else None,
                    chain_expiry=min(verified) if verified else None)


__all__ = ["ATTEMPT_DELAY_S", "Exchange", "Prepared", "Proxy", "Trace", "WireTransport", "prepare", "tls_facts"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request as bytes for the wire: the origin it goes to, its method, and head plus body.

    The head has no Connection header; the transport adds its own. Build one with `prepare`, reuse it freely.
    """

    origin: tuple[str, str, int]
    method: bytes
    head: bytes
    body: bytes


def prepare(request: httpx.Request) -> Prepared:
    """The bytes httpx would send for `request` (its URL encoding and header order), ready to reuse."""
    url = request.url
    scheme = url.scheme
    origin = (scheme, url.host, url.port or _DEFAULT_PORTS.get(scheme, 0))
    method = request.method.encode()
    lines = [method, b" ", url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if name.lower() != b"connection":
            lines += (name, b": ", value, b"\r\n")
    return Prepared(origin, method, b"".join(lines), request.content or b"")


Resolver = Callable[[str, int], list[tuple[int, Any]]]
"""A blocking name lookup: (family, sockaddr) pairs for a host and port, in preference order (run on a worker
thread). The default is socket.getaddrinfo; tests pass their own."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy every connection of a transport goes through; `authorization` is the Proxy-Authorization
    value (Basic, from the URL's user:password), never logged: sentences name only `host:port`."""

    host: str
    port: int
    authorization: bytes | None = None

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """From `http://[user:password@]host[:port]` (the port defaults to 80, as curl's to 1080 for none)."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("a proxy URL must be http://host:port")
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            auth = b"Basic " + base64.b64encode(pair)
        return cls(parts.hostname, parts.port or 80, auth)

    @property
    def name(self) -> str:
        """host:port, for sentences."""
        return f"{self.host}:{self.port}"


@dataclass
class WireTransport:
    """HTTP/1.1 over asyncio for probes. `ssl_context` verifies https targets; `keep_alive` reuses connections;
    `proxy` sends everything through an HTTP proxy; `resolver` looks names up (socket.getaddrinfo)."""

    ssl_context: ssl.SSLContext | None
    keep_alive: bool = False
    max_idle: int = 64
    idle_limit: float = IDLE_LIMIT_S
    proxy: Proxy | None = None
    resolver: Resolver | None = None
    attempt_delay: float = ATTEMPT_DELAY_S
    _idle: dict[tuple[str, str, int], list[Exchange]] = field(default_factory=dict)
    _open: set[Exchange] = field(default_factory=set)
    _certificates: dict[Any, Decoded] = field(default_factory=dict)  # decoded peer certificates (tls_facts)

    async def send(self, prepared: Prepared, trace: Trace) -> Exchange:
        """Send a prepared request and return once its response head arrived (`release` it when done).

        Failures raise probes._errors.TransportError types whose cause is the socket, TLS or DNS error.
        """
        scheme = prepared.origin[0]
        if scheme not in _DEFAULT_PORTS or (scheme == "https" and self.ssl_context is None):
            raise UnsupportedScheme(f"unsupported scheme {scheme!r}")
        connection = self._pooled(prepared.origin) if self.keep_alive else None
        if connection is None:
            connection = await self._connect(prepared.origin, trace)
        else:
            trace.reused = True
            trace._ready_at = time.perf_counter()
        connection._reset(trace, prepared.method)
        trace.tls_facts = connection.tls
        head = prepared.head
        if self.proxy is not None and scheme == "http":
            head = self._absolute_form(prepared)
        try:
            trace.phase = "sending the request"
            assert connection.transport is not None
            if not trace.wire_at:  # a reused connection: this write is the request's first act on the network
                trace.wire_at = time.perf_counter()
            connection.transport.write(
                head + (b"Connection: keep-alive\r\n\r\n" if self.keep_alive else b"Connection: close\r\n\r\n")
                + prepared.body)
            trace.phase = "waiting for the response"
            while not connection.headers_done and connection.error is None:
                await connection.wait()
            if not connection.headers_done:
                raise connection.error  # type: ignore[misc]  # the loop ends on headers or an error
            # A head followed at once by a broken body: the status stands, reading the body raises the error.
        except BaseException:
            connection.close()
            raise
        trace.processing = trace._first_byte_at - trace._ready_at
        trace.phase = "reading the body"
        trace.version = 1.0 if connection.parser.get_http_version() == "1.0" else 1.1
        trace.content_length = connection.content_length
        return connection

    def _absolute_form(self, prepared: Prepared) -> bytes:
        """The request line in absolute form (`GET http://host:port/path HTTP/1.1`) and Proxy-Authorization."""
        assert self.proxy is not None
        _, host, port = prepared.origin
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        rest = prepared.head[len(prepared.method) + 1:]
        head = prepared.method + b" http://" + authority.encode("ascii") + rest
        if self.proxy.authorization is not None:
            head += b"Proxy-Authorization: " + self.proxy.authorization + b"\r\n"
        return head

    def _pooled(self, key: tuple[str, str, int]) -> Exchange | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        fresh_after = time.monotonic() - self.idle_limit
        while idle:
            connection = idle.pop()  # the most recently used first
            if not connection.closed and connection.idle_since >= fresh_after:
                return connection
            connection.close()
        return None

    async def _connect(self, key: tuple[str, str, int], trace: Trace) -> Exchange:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        trace.phase = "resolving the host name"
        proxy = self.proxy
        dial_host, dial_port = (proxy.host, proxy.port) if proxy is not None else (host, port)
        try:
            addresses = await _resolve(loop, dial_host, dial_port, trace, self.resolver)
        except ResolveFailed as exc:
            if proxy is None:
                raise
            raise ProxyFailed(f"the proxy {proxy.name} did not resolve") from exc.__cause__
        resolved = time.perf_counter()
        trace.resolve = resolved - started
        trace.phase = "connecting"
        connection = Exchange(loop, key, self._open)
        if not trace.wire_at:  # an IP address: no lookup, the connect is the first act on the network
            trace.wire_at = time.perf_counter()
        try:
            sock = await _dial(loop, addresses, self.attempt_delay)
        except ConnectFailed as exc:
            if proxy is None:
                raise
            raise ProxyFailed(f"could not connect to the proxy {proxy.name}: {exc}") from exc.__cause__
        try:
            if proxy is not None and scheme == "https":
                trace.phase = "opening the proxy tunnel"
                await _tunnel(loop, sock, proxy, host, port)
            connected = time.perf_counter()
            trace.connect = connected - resolved
            if scheme == "https":
                trace.phase = "in the TLS handshake"
                await loop.create_connection(lambda: connection, sock=sock, ssl=self.ssl_context,
                                             server_hostname=host, ssl_handshake_timeout=None)
                assert connection.transport is not None
                connection.tls = tls_facts(connection.transport, self._certificates)
                trace.tls = time.perf_counter() - connected
            else:
                _socket.SocketTransport(loop, sock, connection)
        except ssl.SSLError as exc:
            sock.close()
            raise TlsFailed(str(exc)) from exc
        except OSError as exc:
            sock.close()
            local = local_exhaustion(exc)
            if local is not None:
                raise local from exc
            raise ConnectFailed(str(exc)) from exc
        except BaseException:
            sock.close()
            raise
        trace._ready_at = time.perf_counter()
        self._open.add(connection)
        return connection

    def release(self, connection: Exchange) -> None:
        """Give an exchange back: a complete, reusable one is pooled (keep_alive), any other closed."""
        connection.trace = None
        if self.keep_alive and connection.reusable:
            idle = self._idle.setdefault(connection.key, [])
            if len(idle) < self.max_idle:
                connection.idle_since = time.monotonic()
                idle.append(connection)
                return
        if not self.keep_alive and connection.complete and connection.error is None:
            connection.linger(LINGER_S)  # we sent Connection: close; the server's FIN is on its way
            return
        connection.close()

    async def aclose(self) -> None:
        """Close every connection, idle or not."""
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost callbacks


async def _attempt(loop: asyncio.AbstractEventLoop, family: int, address: Any) -> socket.socket:
    """One TCP connect; the monitor's own exhaustion raises LocalExhausted, anything else ConnectFailed."""
    try:
        return await _socket.connect(loop, family, address)
    except OSError as exc:
        local = local_exhaustion(exc)
        if local is not None:
            raise local from exc
        raise ConnectFailed(exc.strerror or str(exc)) from exc


def interleave(addresses: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """RFC 8305 4: the resolver's order, families alternating, starting with the first address's family."""
    if len(addresses) < 2:
        return addresses
    first = addresses[0][0]
    same = [a for a in addresses if a[0] == first]
    other = [a for a in addresses if a[0] != first]
    return [a for pair in itertools.zip_longest(same, other) for a in pair if a is not None]


async def _dial(loop: asyncio.AbstractEventLoop, addresses: list[tuple[int, Any]], delay: float) -> socket.socket:
    """A connected socket to the first of `addresses` that connects (Happy Eyeballs: a new attempt every `delay`
    seconds, or at once when one fails); ConnectFailed from the last failure when none does."""
    if len(addresses) == 1:
        return await _attempt(loop, *addresses[0])
    queue = interleave(addresses)
    pending: set[asyncio.Task[socket.socket]] = set()
    failure: BaseException | None = None
    winner: socket.socket | None = None
    try:
        while winner is None:
            if queue:
                pending.add(loop.create_task(_attempt(loop, *queue.pop(0))))
            if not pending:
                break
            done, pending = await asyncio.wait(pending, timeout=delay if queue else None,
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is None:
                    if winner is None:
                        winner = task.result()
                    else:
                        task.result().close()
                elif not isinstance(error, ConnectFailed):
                    raise error  # LocalExhausted: the monitor's, whatever the other addresses do
                else:
                    failure = error
    finally:
        # Not awaited (a cancellation of this task must not be swallowed here): a cancelled attempt closes its
        # socket as it unwinds, and one that connected in the same instant is closed by the callback.
        for task in pending:
            task.cancel()
            task.add_done_callback(_discard)
    if winner is not None:
        return winner
    assert failure is not None
    raise failure


def _discard(task: asyncio.Task[socket.socket]) -> None:
    """Close the socket of a losing attempt that connected anyway; read its error so none is left unretrieved."""
    if not task.cancelled() and task.exception() is None:
        task.result().close()


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")
_TUNNEL_HEAD_MAX = 16 * 1024


async def _tunnel(loop: asyncio.AbstractEventLoop, sock: socket.socket, proxy: Proxy, host: str, port: int) -> None:
    """Ask the proxy to CONNECT to host:port; ProxyFailed unless it answers 2xx."""
    authority = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode("ascii")
    request = b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n"
    if proxy.authorization is not None:
        request += b"Proxy-Authorization: " + proxy.authorization + b"\r\n"
    await loop.sock_sendall(sock, request + b"\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer and b"\n\n" not in answer:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise ProxyFailed(f"the proxy {proxy.name} closed the connection instead of opening a tunnel")
        answer += chunk
        if len(answer) > _TUNNEL_HEAD_MAX:
            raise ProxyFailed(f"the proxy {proxy.name} answered CONNECT with an oversized head")
    match = _STATUS_LINE.match(answer)
    if match is None:
        raise ProxyFailed(f"the proxy {proxy.name} did not answer CONNECT with HTTP")
    status = int(match.group(1))
    if not 200 <= status <= 299:
        raise ProxyFailed(f"the proxy {proxy.name} refused the tunnel to {host}:{port} with {status}")


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int, trace: Trace,
                   resolver: Resolver | None = None) -> list[tuple[int, Any]]:
    """(family, sockaddr) to try, in the resolver's order; an IP literal is used as it is.

    The lookup runs on the loop's default executor, as `loop.getaddrinfo` does; the worker thread notes in
    `trace.wire_at` when it starts it, so time queued behind other lookups is not counted as the target's.
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            socket.inet_pton(family, host)
            return [(family, (host, port))]
    try:
        addresses = await loop.run_in_executor(None, _lookup, host, port, trace, resolver or _getaddrinfo)
    except socket.gaierror as exc:
        raise ResolveFailed(f"DNS lookup failed for {host}: {exc.strerror}") from exc
    except OSError as exc:  # EAI_SYSTEM: glibc could not open /etc/hosts or a socket (EMFILE) for the lookup
        local = local_exhaustion(exc)
        if local is not None:
            raise local from exc
        raise ResolveFailed(f"DNS lookup failed for {host}: {exc.strerror or exc}") from exc
    if not addresses:
        raise ResolveFailed(f"DNS lookup for {host} returned no address")
    return addresses


def _getaddrinfo(host: str, port: int) -> list[tuple[int, Any]]:
    return [(family, address) for family, _, _, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _lookup(host: str, port: int, trace: Trace, resolver: Resolver) -> list[tuple[int, Any]]:
    """The lookup on a worker thread, noting when it left the queue for the resolver."""
    if not trace.wire_at:
        trace.wire_at = time.perf_counter()
    return resolver(host, port)
