"""One HTTP/1.1 exchange on its connection: the head made plain (probes/_head.py), llhttp (httptools) callbacks,
body hand-over, failures as probes/_errors.py types.

`Exchange` is the asyncio protocol of a connection and the state of the request on it; probes/wire.py opens
connections, sends requests and pools or closes exchanges. The response head is collected here until its blank
line, normalised where llhttp is stricter than a user agent may be, then fed to llhttp with what followed it.
Parse errors become InvalidResponse, a close or reset before the answer is complete ConnectionClosed or
ConnectionReset with the socket error as cause.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httptools

from monitor.core.results import HttpFacts, TlsFacts
from monitor.core.status import valid_status
from probes._errors import ConnectionClosed, ConnectionReset, InvalidResponse
from probes._head import MAX_HEAD_BYTES, head_end, normalise

_HEAD_TOO_BIG = f"response head larger than {MAX_HEAD_BYTES // 1024} KB"
_PAUSE_ABOVE = 256 * 1024  # body bytes buffered ahead of the reader before the socket is paused


@dataclass(slots=True)
class Trace:
    """Where one request got to and how long each phase took (blackbox_exporter's phases, in seconds).

    Pass one in `request.extensions["trace"]` to read it after a failure too. `resolve`, `connect` and `tls`
    stay 0 for a reused connection; `tls` is the handshake alone. `processing` runs from the connection being
    ready to the first byte of the answer, `transfer` from there to the end of the body.

    `wire_at` (time.perf_counter; 0: not yet) is when the request first reached the network, the moment that
    splits a timeout into pam-monitor's part and the target's (core.wiretime.Wire): a resolver thread starting the
    name's lookup, or for an IP address the TCP connect starting, or on a reused connection the request being
    handed to the socket. Waiting for a free resolver thread is pam-monitor's; the lookup, the connect, the TLS
    handshake and the answer are the target's (or its network's).
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
    wire_at: float = 0.0
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




class Exchange(asyncio.Protocol):
    """One TCP or TLS connection carrying one exchange at a time; the parser's callbacks land here.

    Once the response head is in: `status`, `headers` (raw), `reason`, `http_version` ('HTTP/1.1'),
    `content_length` (-1: not announced), `body()`; the transport takes it back with `release`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], owner: set[Exchange]) -> None:
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
        # "2 \r\n" as a chunk size line: curl and httpx read it, llhttp only when told to.
        self.parser.set_dangerous_leniencies(lenient_spaces_after_chunk_size=True)
        self.head: bytearray | None = bytearray()  # the head's bytes until its blank line arrived (None: fed)
        self.close_after = False  # Content-Length with Transfer-Encoding: never reuse the connection
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
        """Collect the head, then feed the parser; a parse error ends the exchange with InvalidResponse."""
        if self.trace is None:  # bytes nobody asked for: this connection cannot be trusted again
            self.close()
            return
        if not self.trace._first_byte_at:
            self.trace._first_byte_at = time.perf_counter()
        if self.head is None:
            self._feed(data)
            return
        if not self.head and data[9:10] != b"1":
            # Nothing buffered and no interim answer: most answers arrive whole, and most heads need no change,
            # so the read goes to the parser as it came (one call, no copy).
            end = head_end(data)
            if 0 < end <= MAX_HEAD_BYTES:
                given = data[:end]
                try:
                    head = normalise(given)
                except InvalidResponse as exc:
                    self._fail(exc)
                    return
                if head.data is given:
                    self.head = None
                    self._feed(data)
                    return
        buf = self.head
        start = max(0, len(buf) - 2)
        buf += data
        while True:
            end = head_end(buf, start)
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    self._fail(InvalidResponse(_HEAD_TOO_BIG))
                return
            if end > MAX_HEAD_BYTES:
                self._fail(InvalidResponse(_HEAD_TOO_BIG))
                return
            try:
                head = normalise(bytes(buf[:end]))
            except InvalidResponse as exc:
                self._fail(exc)
                return
            rest = bytes(buf[end:])
            self.head = None
            self.close_after = self.close_after or head.close_after
            self._feed(head.data)
            if self.error is not None:
                return
            if not self.headers_done:  # a 1xx interim answer: the real head follows
                self.head = buf = bytearray(rest)
                start = 0
                continue
            if rest:
                self._feed(rest)
            return

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidResponse("the server switched protocols", self._status()))
        except httptools.HttpParserError as exc:
            self._fail(InvalidResponse(f"malformed HTTP: {exc}", self._status()))

    def _status(self) -> int | None:
        return self.status if self.headers_done else None

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
        """One response header (the head was measured and normalised before the parser saw it)."""
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
        if not valid_status(self.status):  # RFC 9110 15: three digits, 100-599; 600 or 999 is no HTTP status
            self._fail(InvalidResponse(f"status {self.status} is outside 100-599"))
            raise ValueError("status outside 100-599")  # stops llhttp; the error above is the exchange's
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
            self.headers, self.reason = [], b""
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
        status = self._status()
        if exc is not None:
            kind = ConnectionReset if isinstance(exc, ConnectionResetError) else ConnectionClosed
            error = kind(str(exc) or type(exc).__name__, status)
            error.__cause__ = exc
            self._fail(error)
        elif self.headers_done and self.until_close and self.method != b"HEAD":
            self.on_message_complete()
        elif self.headers_done:
            self._fail(ConnectionClosed("the server closed the connection before the whole body arrived", status))
        else:
            self._fail(ConnectionClosed("the server closed the connection without sending a response"))

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
                and not self.close_after and self.method != b"HEAD")

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


