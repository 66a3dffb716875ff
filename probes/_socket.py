"""A plain-TCP asyncio transport with fewer event-loop turns than the loop's own, for one short HTTP exchange.

asyncio's `sock_connect` + `create_connection(sock=...)` take about six loop iterations per fresh connection
(writer registered and dropped, transport built, `connection_made` and the reader each scheduled, a waiter
future); this takes two: one when the connect completes, one per read. The protocol sees the usual calls
(`connection_made`, `data_received`, `eof_received`, `connection_lost` with the socket error), so probes/wire.py
treats both transports alike. TLS connections keep asyncio's own transport.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import socket
from typing import Any

_READ_SIZE = 256 * 1024


async def connect(loop: asyncio.AbstractEventLoop, family: int, address: Any) -> socket.socket:
    """A connected non-blocking TCP socket (TCP_NODELAY); raises OSError (refused, unreachable...)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(address)
        if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            done: asyncio.Future[None] = loop.create_future()
            fd = sock.fileno()
            loop.add_writer(fd, _settle, done)
            try:
                await done
            finally:
                loop.remove_writer(fd)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code != 0:
            raise OSError(code, f"Connect call failed {address}: {os.strerror(code)}")
    except BaseException:
        sock.close()
        raise
    return sock


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class SocketTransport(asyncio.Transport):
    """Reads with `add_reader` straight into the protocol; writes directly, queueing only what does not fit."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._pending: collections.deque[bytes] = collections.deque()
        self._reading = False
        self._closing = False
        protocol.connection_made(self)
        self.resume_reading()

    # -- reading -------------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        if data:
            self._protocol.data_received(data)
        else:
            self.pause_reading()
            self._protocol.eof_received()
            self.close()

    def is_reading(self) -> bool:
        """Whether the socket is watched for input."""
        return self._reading

    def pause_reading(self) -> None:
        """Stop watching for input (flow control)."""
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        """Watch for input again."""
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    # -- writing -------------------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send now; what the kernel does not take waits for writability."""
        if self._closing or not data:
            return
        if not self._pending:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fatal(exc)
                return
            data = bytes(data[sent:])
            if not data:
                return
            self._loop.add_writer(self._fd, self._on_writable)
        self._pending.append(bytes(data))

    def _on_writable(self) -> None:
        while self._pending:
            chunk = self._pending[0]
            try:
                sent = self._sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal(exc)
                return
            if sent < len(chunk):
                self._pending[0] = chunk[sent:]
                return
            self._pending.popleft()
        self._loop.remove_writer(self._fd)

    def can_write_eof(self) -> bool:
        """No half-close: requests are whole."""
        return False

    def get_write_buffer_size(self) -> int:
        """Bytes waiting to be sent."""
        return sum(len(chunk) for chunk in self._pending)

    # -- closing -------------------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        """Whether close() or abort() was called."""
        return self._closing

    def close(self) -> None:
        """Close the socket now; the protocol hears `connection_lost(None)` on the next loop turn."""
        self._shutdown(None)

    def abort(self) -> None:
        """The same as close(): nothing is buffered worth flushing."""
        self._shutdown(None)

    def _fatal(self, exc: OSError) -> None:
        self._shutdown(exc)

    def _shutdown(self, exc: Exception | None) -> None:
        if self._closing:
            return
        self._closing = True
        self.pause_reading()
        if self._pending:
            self._pending.clear()
            self._loop.remove_writer(self._fd)
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, exc)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """'socket' and 'peername'; nothing about TLS (this transport never carries it)."""
        if name == "socket":
            return self._sock
        if name == "peername" and not self._closing:
            try:
                return self._sock.getpeername()
            except OSError:
                return default
        return default
