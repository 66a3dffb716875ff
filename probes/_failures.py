"""Why a request produced no usable response: one outcome and one sentence, from the exception's type.

The probes' own transport raises the probes/_errors.py tree (its type says what happened, the socket, TLS or DNS
error under it says why); identity sign-ins go through httpx, whose exceptions are read as before.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import httpx

from monitor.core.results import Outcome
from probes import _errors
from probes._exchange import Trace

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class Failed:
    """No usable response: the outcome, a sentence with the observed values, and how long it took."""

    outcome: Outcome
    message: str
    elapsed: float
    status: int | None = None
    trace: Trace | None = None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


_E = TypeVar("_E", bound=BaseException)


def _first(chain: list[BaseException], kind: type[_E]) -> _E | None:
    return next((item for item in chain if isinstance(item, kind)), None)


# The wire transport (probes/_exchange.py, over llhttp) raises one RemoteProtocolError for every protocol failure,
# with httpcore's wording for a connection closed early ("peer closed connection without sending complete message
# body", "Server disconnected without sending a response"); only that text tells it from an answer that is not
# valid HTTP.
_CLOSED_EARLY = re.compile(r"peer closed connection|server disconnected", re.IGNORECASE)


def classify_failure(exc: BaseException, host: str, status: int | None, elapsed: float,
                     phase: str = "waiting for the response") -> Failed:
    """Turn a failed request into an outcome and a sentence, by the exception types in its cause chain.

    `status` is the response's status when headers had arrived before the failure (kept in the result);
    `phase` is where the request was when it ran out of time (probes.wire.Trace.phase).
    """
    chain = list(_chain(exc))
    after = f"after {elapsed:.2f} s"

    def failed(outcome: Outcome, message: str) -> Failed:
        return Failed(outcome, message, elapsed, status)

    def timed_out(phase: str) -> Failed:
        what = f"reading the body of a {status} response" if status is not None else phase
        return failed(Outcome.TIMEOUT, f"timed out {after} {what}")

    if isinstance(exc, _errors.TransportError):
        return _typed(exc, chain, host, status, elapsed)
    if isinstance(exc, httpx.TimeoutException):
        return timed_out(_timeout_phase(exc))
    if isinstance(exc, TimeoutError):  # our own deadline (asyncio.timeout_at)
        return timed_out(phase)
    if isinstance(exc, httpx.DecodingError):
        return failed(Outcome.INVALID_RESPONSE, f"body could not be decoded: {clean_text(str(exc))}")
    if isinstance(exc, httpx.LocalProtocolError):
        # The request encoder's message may quote a header value, which may be a secret: say only what to look at.
        return failed(Outcome.INTERNAL_ERROR, "could not encode the request; check the configured method, headers "
                                              "and body")
    if isinstance(exc, httpx.RemoteProtocolError):
        text = clean_text(str(exc))
        if _CLOSED_EARLY.search(text):
            what = f"while reading a {status} response" if status is not None else "before any response"
            return failed(Outcome.CONNECTION_ERROR, f"server closed the connection {what}: {text} {after}")
        if status is not None:
            return failed(Outcome.INVALID_RESPONSE, f"the body of the {status} response is not valid HTTP: {text}")
        return failed(Outcome.INVALID_RESPONSE, f"the answer is not HTTP: {text}")
    return _connection_failure(chain, host, status, elapsed)


def _typed(exc: _errors.TransportError, chain: list[BaseException], host: str, status: int | None,
           elapsed: float) -> Failed:
    """The sentence for one of the probes' own transport errors (probes/_errors.py)."""
    after = f"after {elapsed:.2f} s"
    status = getattr(exc, "status", None) or status
    text = clean_text(str(exc))
    if isinstance(exc, _errors.LocalExhausted):
        # The runner skips the run (saturated); this sentence is what `pam-monitor check` shows.
        return Failed(Outcome.INTERNAL_ERROR, f"pam-monitor ran out of its own resources before reaching {host}: "
                                              f"{exc.cause}", elapsed)
    if isinstance(exc, _errors.UnsupportedScheme):
        return Failed(Outcome.INTERNAL_ERROR, f"cannot send the request: {text}", 0.0)
    if isinstance(exc, _errors.InvalidResponse):
        if status is not None:
            return Failed(Outcome.INVALID_RESPONSE, f"the body of the {status} response is not valid HTTP: {text}",
                          elapsed, status)
        return Failed(Outcome.INVALID_RESPONSE, f"the answer is not HTTP: {text}", elapsed)
    if isinstance(exc, _errors.ProxyFailed):
        return Failed(Outcome.CONNECTION_ERROR, f"no connection to {host} through its proxy: {text} {after}",
                      elapsed, status)
    if isinstance(exc, _errors.ConnectionClosed) and not isinstance(exc, _errors.ConnectionReset) \
            and exc.__cause__ is None:
        what = f"while reading a {status} response" if status is not None else "before any response"
        return Failed(Outcome.CONNECTION_ERROR, f"server closed the connection {what}: {text} {after}", elapsed,
                      status)
    return _connection_failure(chain, host, status, elapsed)


def _connection_failure(chain: list[BaseException], host: str, status: int | None, elapsed: float) -> Failed:
    after = f"after {elapsed:.2f} s"
    reading = f" while reading a {status} response" if status is not None else ""
    dns = _first(chain, socket.gaierror)
    if dns is not None:
        reason = dns.strerror or clean_text(str(dns))
        return Failed(Outcome.DNS_ERROR, f"DNS lookup failed for {host}: {reason} {after}", elapsed, status)
    tls = _first(chain, ssl.SSLError)
    if tls is not None:
        return Failed(Outcome.TLS_ERROR, f"TLS handshake with {host} failed: {clean_text(str(tls))} {after}",
                      elapsed, status)
    errnos = {getattr(item, "errno", None) for item in chain}
    if errno.ECONNREFUSED in errnos or _first(chain, ConnectionRefusedError) is not None:
        return Failed(Outcome.CONNECTION_ERROR, f"connection to {host} refused {after}", elapsed, status)
    if errno.ECONNRESET in errnos or _first(chain, ConnectionResetError) is not None:
        return Failed(Outcome.CONNECTION_ERROR, f"connection to {host} reset by peer{reading} {after}",
                      elapsed, status)
    os_error = _first(chain, OSError)
    reason = ((os_error.strerror if os_error is not None else None) or clean_text(str(chain[0]))
              or type(chain[0]).__name__)
    return Failed(Outcome.CONNECTION_ERROR, f"connection to {host} failed{reading}: {reason} {after}", elapsed, status)


def _timeout_phase(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connecting"
    if isinstance(exc, httpx.WriteTimeout):
        return "sending the request"
    if isinstance(exc, httpx.PoolTimeout):
        return "waiting for a pooled connection"
    return "waiting for the response"


def clean_text(text: str, limit: int = 160) -> str:
    """`text` with control characters made spaces, stripped and cut to `limit` characters (for sentences)."""
    return _CONTROL.sub(" ", text).strip()[:limit]

