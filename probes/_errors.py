"""The probes' transport errors: one small tree, so a failure is classified by its type, never by its text.

    TransportError                  a request got no usable answer
    ├── LocalExhausted              pam-monitor's own resources ran out (EMFILE, ENFILE, ENOBUFS, EADDRNOTAVAIL,
    │                               ENOMEM at socket()/connect()): the monitor's limit, never the target's outcome
    ├── ConnectFailed               no connection: refused, unreachable, reset during connect
    │   ├── ResolveFailed           the name did not resolve (cause: socket.gaierror)
    │   ├── TlsFailed               the TLS handshake failed (cause: ssl.SSLError)
    │   └── ProxyFailed             the configured proxy refused or broke the tunnel
    ├── ConnectionClosed            the server closed or reset the connection before the answer was complete
    │   └── ConnectionReset         ... with a reset (cause: ConnectionResetError)
    ├── InvalidResponse             bytes that are not an HTTP/1.1 answer (framing, status, head size)
    └── UnsupportedScheme           a URL this transport cannot carry (a config problem, internal_error)

The socket, TLS or DNS error that caused one is its `__cause__` (raise ... from exc), for the sentence.
`status` is set on errors raised after a response head arrived (ConnectionClosed, InvalidResponse).
"""

from __future__ import annotations

import errno

LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.EADDRNOTAVAIL, errno.ENOMEM})
"""errno values at socket()/connect() that mean this host ran out of something (descriptors, buffers, ephemeral
ports, memory): the monitor's saturation, whatever the target is doing."""


class TransportError(Exception):
    """A request got no usable answer; the message is a sentence fragment safe to show (no secrets)."""


class LocalExhausted(TransportError):
    """pam-monitor's own host ran out of a resource before the request reached the target."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause
        """What ran out, for the skipped-run log ('too many open files (EMFILE)')."""


class ConnectFailed(TransportError):
    """No connection to the target (refused, unreachable, reset while connecting)."""


class ResolveFailed(ConnectFailed):
    """The target's host name did not resolve."""


class TlsFailed(ConnectFailed):
    """The TLS handshake with the target failed."""


class ProxyFailed(ConnectFailed):
    """The configured proxy refused the tunnel (its status in the message) or closed it."""


class ConnectionClosed(TransportError):
    """The server closed the connection before the answer was complete (`status`: the head had arrived)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConnectionReset(ConnectionClosed):
    """The connection was reset (RST) before the answer was complete."""


class InvalidResponse(TransportError):
    """The answer is not HTTP/1.1 pam-monitor may trust (`status`: set when the head had parsed)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UnsupportedScheme(TransportError):
    """The URL's scheme is neither http nor https (or https without a TLS context)."""


def local_exhaustion(exc: OSError) -> LocalExhausted | None:
    """A LocalExhausted for an OSError whose errno means this host ran out of something, else None."""
    if exc.errno not in LOCAL_ERRNOS:
        return None
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return LocalExhausted(f"{(exc.strerror or name).lower()} ({name})")


__all__ = [
    "LOCAL_ERRNOS",
    "ConnectFailed",
    "ConnectionClosed",
    "ConnectionReset",
    "InvalidResponse",
    "LocalExhausted",
    "ProxyFailed",
    "ResolveFailed",
    "TlsFailed",
    "TransportError",
    "UnsupportedScheme",
    "local_exhaustion",
]
