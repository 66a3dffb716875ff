"""The probes' HTTP/1.1 transport: asyncio sockets, llhttp parsing (httptools), phase timings and TLS facts.

An `httpx.AsyncBaseTransport`, so requests and responses stay httpx objects; only the bytes on the wire are ours.
httptools (the C parser uvicorn uses) does the parsing; this module does the glue: connect, send, feed the parser,
hand the body over in order, and raise httpx's exception types with the socket error as their cause, so
probes/_http.py classifies failures the same way whatever carries the bytes.

A request never retries: a connection reset or closed before the answer is reported, since a monitor must see it.
With `keep_alive` off every request opens its own connection (resolve, connect, TLS each time, as
blackbox_exporter does) and says `Connection: close`; with it on, idle connections are reused.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httptools
import httpx

from monitor.core.results import HttpFacts, TlsFacts
from probes import _socket

MAX_HEAD_BYTES = 100 * 1024
"""A response head larger than this is not HTTP a monitor should accept (httpcore's limit too)."""
IDLE_LIMIT_S = 1.0
"""A pooled connection idle longer than this is closed rather than reused: servers drop idle connections after a
few seconds (gunicorn 2 s, uvicorn and Node 5 s), and one dropped just as a request goes out would read as a
failure of the target."""
LINGER_S = 1.0
"""How long a finished one-shot connection waits for the server to close first before closing itself."""
_PAUSE_ABOVE = 256 * 1024  # body bytes buffered ahead of the reader before the socket is paused
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(slots=True)
class Trace:
    """Where one request got to and how long each phase took (blackbox_exporter's phases, in seconds).

    Pass one in `request.extensions["trace"]` to read it after a failure too. `resolve`, `connect` and `tls`
    stay 0 for a reused connection; `tls` is the handshake alone. `processing` runs from the connection being
    ready to the first byte of the answer, `transfer` from there to the end of the body.
    """

    phase: str = "resolving the host name"
    resolve: float = 0.0
    connect: float = 0.0
    tls: float = 0.0
    processing: float = 0.0
    transfer: float = 0.0
    reused: bool = False
    tls_facts: TlsFacts | None = None
    # Of the answer, once its head arrived: HTTP version (1.1) and announced Content-Length (-1: none).
    version: float = 0.0
    content_length: int = 0
    _ready_at: float = 0.0
    _first_byte_at: float = 0.0

    def facts(self) -> HttpFacts:
        """The trace as the result carries it (blackbox_exporter's HTTP facts)."""
        return HttpFacts(
            phases={"resolve": self.resolve, "connect": self.connect, "tls": self.tls,
                    "processing": self.processing, "transfer": self.transfer},
            version=self.version, content_length=self.content_length, dns_lookup_s=self.resolve,
            tls=self.tls_facts,
        )


def _name(parts: Any) -> str | None:
    if not parts:
        return None
    return ",".join(f"{_SHORT.get(k, k)}={v}" for rdn in parts for k, v in rdn)


_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
          "localityName": "L", "stateOrProvinceName": "ST", "domainComponent": "DC"}


def tls_facts(transport: asyncio.BaseTransport) -> TlsFacts | None:
    """The negotiated version and the peer certificate's notAfter/subject/issuer of a TLS connection."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert() or {}  # {} when the certificate was not verified (verify_tls: false)
    not_after = cert.get("notAfter")
    return TlsFacts(ssl_object.version(), ssl.cert_time_to_seconds(not_after) if not_after else None,
                    _name(cert.get("subject")), _name(cert.get("issuer")))


class _Connection(asyncio.Protocol):
    """One TCP or TLS connection carrying one exchange at a time; the parser's callbacks land here."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], owner: set[_Connection]) -> None:
        self.loop = loop
        self.key = key
        self.owner = owner  # the transport's open connections, which this one leaves when it closes
        self.lingering: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.tls: TlsFacts | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self._reset(None, b"GET")

    def _reset(self, trace: Trace | None, method: bytes) -> None:
        self.trace = trace
        self.method = method
        self.parser = httptools.HttpResponseParser(self)
        self.head_bytes = 0
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.until_close = True  # a body without length or chunking ends when the server closes
        self.content_length = -1
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a parse error ends the exchange with httpx.RemoteProtocolError."""
        if self.trace is None:  # bytes nobody asked for: this connection cannot be trusted again
            self.close()
            return
        if not self.trace._first_byte_at:
            self.trace._first_byte_at = time.perf_counter()
        if not self.headers_done:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._fail(httpx.RemoteProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes"))
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP: {exc}"))

    def eof_received(self) -> bool | None:
        """The server closed its side: the end of a read-until-close body, or an answer cut short."""
        self._closed_by_peer(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """A reset or a close: the same as EOF, with the socket error as the cause."""
        self._closed_by_peer(exc)

    def pause_writing(self) -> None:
        """Requests are small; nothing to do."""

    def resume_writing(self) -> None:
        """Requests are small; nothing to do."""

    # -- httptools callbacks -----------------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        """The reason phrase."""
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        """One response header."""
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            self.until_close = False
            with contextlib.suppress(ValueError):
                self.content_length = int(value)
        elif lower == b"transfer-encoding":
            self.until_close = False

    def on_headers_complete(self) -> None:
        """Headers are in: wake the sender. A 1xx interim answer is dropped (the real one follows)."""
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:
            return
        self.headers_done = True
        # llhttp forgets this once the message is complete, so ask now.
        self.keep_alive = self.parser.should_keep_alive()
        if self.status in (204, 304):
            self.until_close = False
        if self.method == b"HEAD":  # no body follows, whatever Content-Length says (llhttp cannot know)
            self.until_close = False
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        """A piece of the body; reading pauses when the reader falls far behind."""
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _PAUSE_ABOVE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        """The answer is complete (a 1xx interim answer starts the wait for the real one again)."""
        if not self.headers_done:
            self.headers, self.reason, self.head_bytes = [], b"", 0
            return
        self.complete = True
        if self.trace is not None:
            self.trace.transfer = time.perf_counter() - self.trace._first_byte_at
        self._wake()

    # -- the exchange ------------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _closed_by_peer(self, exc: Exception | None) -> None:
        self.closed = True
        if self.lingering is not None:
            self.close()
        if self.trace is None or self.complete:
            return
        if exc is not None:
            self._fail(httpx.ReadError(str(exc) or type(exc).__name__))
            self.error.__cause__ = exc  # type: ignore[union-attr]
        elif self.headers_done and self.until_close and self.method != b"HEAD":
            self.on_message_complete()
        elif self.headers_done:
            self._fail(httpx.RemoteProtocolError("peer closed connection without sending complete message body"))
        else:
            self._fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))

    async def wait(self) -> None:
        """Until the parser made progress (or failed)."""
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def body(self) -> AsyncIterator[bytes]:
        """The body's pieces in order; raises the exchange's error when it breaks."""
        while True:
            while self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.paused and self.buffered < _PAUSE_ABOVE // 2 and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                yield chunk
            if self.complete:  # bytes after a complete answer may break the connection, not this answer
                return
            if self.error is not None:
                raise self.error
            await self.wait()

    @property
    def http_version(self) -> str:
        """'HTTP/1.1' or 'HTTP/1.0', as the status line said."""
        return "HTTP/" + self.parser.get_http_version()

    @property
    def reusable(self) -> bool:
        """Whether another request may go on this connection."""
        return (self.complete and not self.closed and self.error is None and self.keep_alive
                and self.method != b"HEAD")

    def linger(self, limit: float) -> None:
        """Close once the server has closed its side (at most `limit` s from now), so the TIME_WAIT that TCP
        keeps after a close stays on the server, not on the monitor's ephemeral ports."""
        if self.closed:
            self.close()
        else:
            self.lingering = self.loop.call_later(limit, self.close)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.closed = True
        if self.lingering is not None:
            self.lingering.cancel()
            self.lingering = None
        if self.transport is not None:
            self.transport.close()
        self.owner.discard(self)


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


Exchange = _Connection
"""One request on its connection once the response head is in: `status`, `headers` (raw), `reason`,
`http_version` ('HTTP/1.1'), `content_length` (-1: not announced), `body()`; give it back with `release`."""


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
    _idle: dict[tuple[str, str, int], list[_Connection]] = field(default_factory=dict)
    _open: set[_Connection] = field(default_factory=set)

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

    def _pooled(self, key: tuple[str, str, int]) -> _Connection | None:
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

    async def _connect(self, key: tuple[str, str, int], trace: Trace) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        trace.phase = "resolving the host name"
        addresses = await _resolve(loop, host, port)
        resolved = time.perf_counter()
        trace.resolve = resolved - started
        trace.phase = "connecting"
        connection = _Connection(loop, key, self._open)
        last: OSError | None = None
        for family, address in addresses:
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
                connection.tls = tls_facts(connection.transport)
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


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[tuple[int, Any]]:
    """(family, sockaddr) to try, in the resolver's order; an IP literal is used as it is."""
    for family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            socket.inet_pton(family, host)
            return [(family, (host, port))]
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"DNS lookup failed for {host}: {exc.strerror}") from exc
    return [(family, address) for family, _, _, _, address in infos]
