"""The probes' HTTP/1.1 transport: resolve, connect, TLS, send, pool or close; phase timings and TLS facts.

An `httpx.AsyncBaseTransport`, so requests and responses stay httpx objects; only the bytes on the wire are ours.
httptools (the C parser uvicorn uses) does the parsing (probes/_exchange.py); this module and that one do the
glue, and raise httpx's exception types with the socket error as their cause, so probes/_http.py classifies
failures the same way whatever carries the bytes.

A request never retries: a connection reset or closed before the answer is reported, since a monitor must see it.
With `keep_alive` off every request opens its own connection (resolve, connect, TLS each time, as
blackbox_exporter does) and says `Connection: close`; with it on, idle connections are reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from monitor.core.results import TlsFacts
from probes import _socket
from probes._exchange import Exchange, Trace

IDLE_LIMIT_S = 1.0
"""A pooled connection idle longer than this is closed rather than reused: servers drop idle connections after a
few seconds (gunicorn 2 s, uvicorn and Node 5 s), and one dropped just as a request goes out would read as a
failure of the target."""
LINGER_S = 1.0
"""How long a finished one-shot connection waits for the server to close first before closing itself."""
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
    the chain accessors return every certificate either way. They are public from Python 3.13 and exist, unnamed
    in the docs, on the C object since 3.10; without them only the verified leaf is known. Decoding (the ssl
    module's date parsing above all) costs ~10 us a certificate, so `cache` keeps it per certificate (equal
    certificates compare equal, a renewed one does not).
    """
    sslobj = getattr(ssl_object, "_sslobj", None)
    getter = getattr(sslobj, "get_verified_chain" if verified else "get_unverified_chain", None)
    if getter is None:
        leaf = ssl_object.getpeercert()
        return [_decode(leaf)] if leaf else []
    out = []
    try:
        for cert in getter() or ():
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


__all__ = ["BodyStream", "Exchange", "Prepared", "Trace", "WireTransport", "prepare", "tls_facts"]


class BodyStream(httpx.AsyncByteStream):
    """An exchange's body as an httpx stream; closing it releases the exchange to `pool` when one is given."""

    def __init__(self, exchange: Exchange, pool: WireTransport | None = None) -> None:
        self._exchange = exchange
        self._pool = pool

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._exchange.body():
            yield chunk

    async def aclose(self) -> None:
        """Release the connection (when this stream owns it)."""
        if self._pool is not None:
            self._pool.release(self._exchange)


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


@dataclass
class WireTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio for probes. `ssl_context` verifies https targets; `keep_alive` reuses connections."""

    ssl_context: ssl.SSLContext | None
    keep_alive: bool = False
    max_idle: int = 64
    idle_limit: float = IDLE_LIMIT_S
    _idle: dict[tuple[str, str, int], list[Exchange]] = field(default_factory=dict)
    _open: set[Exchange] = field(default_factory=set)
    _certificates: dict[Any, Decoded] = field(default_factory=dict)  # decoded peer certificates (tls_facts)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` and return once the response head arrived; the body streams after."""
        trace: Trace = request.extensions.get("trace") or Trace()
        exchange = await self.send(prepare(request), trace)
        return httpx.Response(
            exchange.status, headers=exchange.headers, stream=BodyStream(exchange, self),
            extensions={"http_version": exchange.http_version.encode(), "reason_phrase": exchange.reason,
                        "trace": trace, "content_length": exchange.content_length},
            request=request,
        )

    async def send(self, prepared: Prepared, trace: Trace) -> Exchange:
        """Send a prepared request and return once its response head arrived (`release` it when done).

        Failures raise httpx.TransportError subclasses whose cause is the socket, TLS or DNS error.
        """
        scheme = prepared.origin[0]
        if scheme not in _DEFAULT_PORTS or (scheme == "https" and self.ssl_context is None):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
        connection = self._pooled(prepared.origin) if self.keep_alive else None
        if connection is None:
            connection = await self._connect(prepared.origin, trace)
        else:
            trace.reused = True
            trace._ready_at = time.perf_counter()
        connection._reset(trace, prepared.method)
        trace.tls_facts = connection.tls
        try:
            trace.phase = "sending the request"
            assert connection.transport is not None
            if not trace.wire_at:  # a reused connection: this write is the request's first act on the network
                trace.wire_at = time.perf_counter()
            connection.transport.write(
                prepared.head + (b"Connection: keep-alive\r\n\r\n" if self.keep_alive else b"Connection: close\r\n\r\n")
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
        addresses = await _resolve(loop, host, port, trace)
        resolved = time.perf_counter()
        trace.resolve = resolved - started
        trace.phase = "connecting"
        connection = Exchange(loop, key, self._open)
        last: OSError | None = None
        for family, address in addresses:
            if not trace.wire_at:  # an IP address: no lookup, the connect is the first act on the network
                trace.wire_at = time.perf_counter()
            try:
                sock = await _socket.connect(loop, family, address)
                break
            except OSError as exc:
                last = exc
        else:
            raise httpx.ConnectError(str(last)) from last
        connected = time.perf_counter()
        trace.connect = connected - resolved
        try:
            if scheme == "https":
                trace.phase = "in the TLS handshake"
                await loop.create_connection(lambda: connection, sock=sock, ssl=self.ssl_context,
                                             server_hostname=host, ssl_handshake_timeout=None)
                assert connection.transport is not None
                connection.tls = tls_facts(connection.transport, self._certificates)
                trace.tls = time.perf_counter() - connected
            else:
                _socket.SocketTransport(loop, sock, connection)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise httpx.ConnectError(str(exc)) from exc
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


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int, trace: Trace) -> list[tuple[int, Any]]:
    """(family, sockaddr) to try, in the resolver's order; an IP literal is used as it is.

    The lookup runs on the loop's default executor, as `loop.getaddrinfo` does; the worker thread notes in
    `trace.wire_at` when it starts it, so time queued behind other lookups is not counted as the target's.
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            socket.inet_pton(family, host)
            return [(family, (host, port))]
    try:
        infos = await loop.run_in_executor(None, _lookup, host, port, trace)
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"DNS lookup failed for {host}: {exc.strerror}") from exc
    return [(family, address) for family, _, _, _, address in infos]


def _lookup(host: str, port: int, trace: Trace) -> list[tuple[Any, ...]]:
    """socket.getaddrinfo on a worker thread, noting when the lookup left the queue for the resolver."""
    if not trace.wire_at:
        trace.wire_at = time.perf_counter()
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
