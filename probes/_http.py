"""Shared helpers for the HTTP probers: capped streaming fetch, failure classification, JSON paths, missing tables."""

from __future__ import annotations

import asyncio
import errno
import json
import re
import socket
import ssl
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from monitor.core.config import RequestSpec, Target
from monitor.core.results import Outcome
from probes.deps import Deps, current_wire, wire_trace

EXCERPT_CHARS = 200
# Scanning more than this for a relation name buys nothing: error bodies are short.
_SCAN_CHARS = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class Fetched:
    """A response that arrived: status, headers and at most `cap` bytes of body."""

    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool
    elapsed: float
    cap: int

    @property
    def content_type(self) -> str:
        """The Content-Type header, lower-cased, without parameters ('' when absent)."""
        value: str = self.headers.get("content-type", "")
        return value.split(";", 1)[0].strip().lower()

    def text(self) -> str:
        """The body read so far as text; undecodable bytes become U+FFFD."""
        return self.body.decode("utf-8", errors="replace")

    def excerpt(self) -> str:
        """At most 200 printable characters of the body, for details of a non-2xx response."""
        return body_excerpt(self.body)


@dataclass(frozen=True, slots=True)
class Failed:
    """No usable response: the outcome, a sentence with the observed values, and how long it took."""

    outcome: Outcome
    message: str
    elapsed: float
    status: int | None = None


def body_excerpt(body: bytes) -> str:
    """Decode up to 200 characters of `body` leniently; control characters and runs of space become one space."""
    text = body[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return " ".join(_CONTROL.sub(" ", text).split())[:EXCERPT_CHARS]


def build_url(target: Target, spec: RequestSpec) -> str:
    """The request URL without query: target base URL plus the filled path template."""
    if target.base_url is None:
        raise ValueError("an HTTP check needs a target with base_url")
    return target.base_url + spec.filled_path()


def request_headers(
    target: Target, spec: RequestSpec, *, drop: Collection[str] = (), extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Target headers, then the check's own, minus `drop` (case-insensitive), plus `extra`.

    Secret values are unwrapped here, at the point of use, and go nowhere but the request.
    """
    dropped = {name.lower() for name in drop}
    # Ask for an uncompressed body so the byte cap bounds memory (a gzip bomb inflates past any cap).
    headers: dict[str, str] = {"Accept-Encoding": "identity"}
    for source in (target.headers, spec.headers):
        for name, value in source.items():
            if name.lower() not in dropped:
                headers[name] = value.get_secret_value()
    headers.update(extra or {})
    return headers


class _UnsendableHeader(ValueError):
    """A configured header that cannot go on the wire; the message names the header, never its value."""


# RFC 9110 token characters for names; visible ASCII, space and tab for values (h11 refuses other control
# characters, and httpx encodes values as ASCII). Checked before sending, so a bad configured value is one clear
# internal_error naming the header instead of an exception from deep in the client.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


def _check_headers(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if _HEADER_NAME.fullmatch(name) is None:
            raise _UnsendableHeader(f"header name {_clean(repr(name), 60)} is not a valid HTTP token")
        if _HEADER_VALUE.fullmatch(value) is None:
            # The value may be a secret: name the header and what to look for, never the value.
            raise _UnsendableHeader(
                f"the value of header {name} has a control or non-ASCII character; check the configured headers"
            )


async def fetch(
    deps: Deps,
    target_name: str,
    spec: RequestSpec,
    *,
    deadline: float,
    cap: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Fetched | Failed:
    """Send `spec` to the target named `target_name` and read at most `cap` bytes before `deadline`.

    The request goes out at once: the runner admitted the run (it holds the target's slots, `deps.slots_for`)
    before its deadline started, so the deadline counts only time on the wire. `deadline` is event-loop time
    (the runner's, see `probes.kind.Prober`); `cap` defaults to deps.body_limit.
    A body longer than the cap is not read further: the response is closed and `truncated` is set. Every
    transport failure comes back as `Failed` with its outcome; nothing a broken target does raises.
    """
    target = deps.targets[target_name]
    limit = deps.body_limit if cap is None else cap
    loop = asyncio.get_running_loop()
    client = deps.client_for(target)
    sent_at: float | None = None
    status: int | None = None
    started = loop.time()
    wire = current_wire()
    on_wire: list[float] = []
    try:
        sending = dict(headers) if headers is not None else request_headers(target, spec)
        _check_headers(sending)
        async with asyncio.timeout_at(deadline):
            remaining = max(deadline - loop.time(), 0.001)
            request = client.build_request(
                spec.method,
                build_url(target, spec),
                params=spec.query or None,
                headers=sending,
                json=spec.json_body,
                content=spec.body.encode() if spec.body is not None else None,
                timeout=httpx.Timeout(remaining),
            )
            if wire is not None:
                request.extensions["trace"] = wire_trace(on_wire, loop)
            sent_at = deps.clock.monotonic()
            response = await client.send(request, stream=True)
            try:
                status = response.status_code
                body, truncated = await _read_capped(response, limit)
            finally:
                await response.aclose()
            return Fetched(
                status=status,
                headers=response.headers,
                body=body,
                truncated=truncated,
                elapsed=deps.clock.monotonic() - sent_at,
                cap=limit,
            )
    except httpx.InvalidURL as exc:
        return Failed(Outcome.INTERNAL_ERROR, f"cannot build the request URL: {exc}", 0.0)
    except _UnsendableHeader as exc:
        return Failed(Outcome.INTERNAL_ERROR, f"could not encode the request: {exc}", 0.0)
    except (TimeoutError, httpx.TransportError, httpx.DecodingError, OSError) as exc:
        if wire is not None and isinstance(exc, TimeoutError | httpx.TimeoutException):
            wire.timed_out(started, on_wire[0] if on_wire else None, deadline)
        return classify_failure(exc, httpx.URL(target.base_url or "http://unknown").host, status,
                                _since(deps, sent_at))


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        room = cap - len(buf)
        if len(chunk) > room:
            buf += chunk[:room]
            return bytes(buf), True
        buf += chunk
    return bytes(buf), False


def _since(deps: Deps, sent_at: float | None) -> float:
    return 0.0 if sent_at is None else deps.clock.monotonic() - sent_at


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


# h11 and httpcore raise one RemoteProtocolError for every protocol failure; only their text tells a connection
# closed early ("peer closed connection without sending complete message body", "Server disconnected without
# sending a response") from an answer that is not valid HTTP.
_CLOSED_EARLY = re.compile(r"peer closed connection|server disconnected", re.IGNORECASE)


def classify_failure(exc: BaseException, host: str, status: int | None, elapsed: float) -> Failed:
    """Turn a failed request into an outcome and a sentence, by the exception types in its cause chain.

    `status` is the response's status when headers had arrived before the failure (kept in the result).
    """
    chain = list(_chain(exc))
    after = f"after {elapsed:.2f} s"

    def failed(outcome: Outcome, message: str) -> Failed:
        return Failed(outcome, message, elapsed, status)

    def timed_out(phase: str) -> Failed:
        what = f"reading the body of a {status} response" if status is not None else phase
        return failed(Outcome.TIMEOUT, f"timed out {after} {what}")

    if isinstance(exc, httpx.TimeoutException):
        return timed_out(_timeout_phase(exc))
    if isinstance(exc, TimeoutError):  # our own deadline (asyncio.timeout_at)
        return timed_out("waiting for the response")
    if isinstance(exc, httpx.DecodingError):
        return failed(Outcome.INVALID_RESPONSE, f"body could not be decoded: {_clean(str(exc))}")
    if isinstance(exc, httpx.LocalProtocolError):
        # The h11 message may quote a header value, which may be a secret: say only what to look at.
        return failed(Outcome.INTERNAL_ERROR, "could not encode the request; check the configured method, headers "
                                              "and body")
    if isinstance(exc, httpx.RemoteProtocolError):
        text = _clean(str(exc))
        if _CLOSED_EARLY.search(text):
            what = f"while reading a {status} response" if status is not None else "before any response"
            return failed(Outcome.CONNECTION_ERROR, f"server closed the connection {what}: {text} {after}")
        if status is not None:
            return failed(Outcome.INVALID_RESPONSE, f"the body of the {status} response is not valid HTTP: {text}")
        return failed(Outcome.INVALID_RESPONSE, f"the answer is not HTTP: {text}")
    return _connection_failure(chain, host, status, elapsed)


def _connection_failure(chain: list[BaseException], host: str, status: int | None, elapsed: float) -> Failed:
    after = f"after {elapsed:.2f} s"
    reading = f" while reading a {status} response" if status is not None else ""
    dns = _first(chain, socket.gaierror)
    if dns is not None:
        return Failed(Outcome.DNS_ERROR, f"DNS lookup failed for {host}: {dns.strerror or _clean(str(dns))} {after}",
                      elapsed, status)
    tls = _first(chain, ssl.SSLError)
    if tls is not None:
        return Failed(Outcome.TLS_ERROR, f"TLS handshake with {host} failed: {_clean(str(tls))} {after}",
                      elapsed, status)
    errnos = {getattr(item, "errno", None) for item in chain}
    if errno.ECONNREFUSED in errnos or _first(chain, ConnectionRefusedError) is not None:
        return Failed(Outcome.CONNECTION_ERROR, f"connection to {host} refused {after}", elapsed, status)
    if errno.ECONNRESET in errnos or _first(chain, ConnectionResetError) is not None:
        return Failed(Outcome.CONNECTION_ERROR, f"connection to {host} reset by peer{reading} {after}",
                      elapsed, status)
    os_error = _first(chain, OSError)
    reason = (os_error.strerror if os_error is not None else None) or _clean(str(chain[0])) or type(chain[0]).__name__
    return Failed(Outcome.CONNECTION_ERROR, f"connection to {host} failed{reading}: {reason} {after}", elapsed, status)


def _timeout_phase(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connecting"
    if isinstance(exc, httpx.WriteTimeout):
        return "sending the request"
    if isinstance(exc, httpx.PoolTimeout):
        return "waiting for a pooled connection"
    return "waiting for the response"


def _clean(text: str, limit: int = 160) -> str:
    return _CONTROL.sub(" ", text).strip()[:limit]


# ---------------------------------------------------------------------------------------------- missing tables


@dataclass(frozen=True, slots=True)
class MissingRelation:
    """A body's evidence that a table is gone: the table names (may be empty) and the error code seen."""

    tables: tuple[str, ...]
    code: str

    def describe(self) -> str:
        """'table user_settings does not exist (42P01)' or a code-only variant."""
        if not self.tables:
            return f"the body reports a missing relation ({self.code}) without naming it"
        noun = "table" if len(self.tables) == 1 else "tables"
        return f"{noun} {', '.join(self.tables)} does not exist ({self.code})"


_IDENT = r"[A-Za-z0-9_$.\-]{1,128}"
_PG_RELATION = re.compile(r'relation\s+"(' + _IDENT + r')"\s+does not exist', re.IGNORECASE)
_PGRST_TABLE = re.compile(r"Could not find the table '(" + _IDENT + r")' in the schema cache", re.IGNORECASE)
_CODE_42P01 = re.compile(r"\b42P01\b")
_CODE_PGRST205 = re.compile(r"\bPGRST205\b")


def find_missing_relation(body: bytes | str) -> MissingRelation | None:
    """Spot an error body that names a missing relation; None when it does not.

    Recognises PostgreSQL `relation "public.user_settings" does not exist`, SQLSTATE `42P01` and PostgREST
    `PGRST205` ("Could not find the table 'public.x' in the schema cache"), also inside JSON strings.
    A leading `public.` is dropped so the name matches the db probe's table names.
    """
    text = body[: _SCAN_CHARS].decode("utf-8", errors="replace") if isinstance(body, bytes) else body[:_SCAN_CHARS]
    text = text.replace('\\"', '"')
    names: dict[str, None] = {}
    code: str | None = None
    for pattern, found_code in ((_PG_RELATION, "42P01"), (_PGRST_TABLE, "PGRST205")):
        for match in pattern.finditer(text):
            names.setdefault(_normalise_table(match.group(1)))
            code = code or found_code
    if _CODE_PGRST205.search(text):
        code = "PGRST205"
    elif code is None and _CODE_42P01.search(text):
        code = "42P01"
    if code is None:
        return None
    return MissingRelation(tuple(list(names)[:5]), code)


def _normalise_table(name: str) -> str:
    return name[len("public."):] if name.startswith("public.") else name


# ---------------------------------------------------------------------------------------------- JSON fields


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def json_path(document: Any, path: str) -> Any:
    """The value at a dotted path (`checks.db`, `items.0.id`), or MISSING."""
    current = document
    for part in path.split("."):
        if isinstance(current, dict):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list) and re.fullmatch(r"\d+", part):
            index = int(part)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def same_json_value(expected: Any, actual: Any) -> bool:
    """Equality that does not let True pass for 1 or '1' for 1."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected is actual
    return bool(expected == actual)


def json_field_problems(document: Any, fields: Mapping[str, Any]) -> list[str]:
    """One sentence per dotted-path field whose value differs from the expected one (actual vs expected)."""
    problems = []
    for path, expected in fields.items():
        actual = json_path(document, path)
        if actual is MISSING:
            problems.append(f"json field {path}: expected {short_repr(expected)}, but the field is missing")
        elif not same_json_value(expected, actual):
            problems.append(f"json field {path}: expected {short_repr(expected)}, got {short_repr(actual)}")
    return problems


def parse_json(fetched: Fetched) -> tuple[bool, Any, str]:
    """(ok, document, why-not) for a response body."""
    if fetched.truncated:
        return False, None, f"the body is longer than the {fetched.cap}-byte read cap, so it cannot be parsed"
    try:
        return True, json.loads(fetched.body), ""
    except (ValueError, UnicodeDecodeError):
        kind = fetched.content_type or "no content-type"
        return False, None, f"the body is not JSON ({kind}, {len(fetched.body)} bytes)"


def short_repr(value: Any, limit: int = 80) -> str:
    """repr() cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def status_list(statuses: Collection[int]) -> str:
    """'401|403' for a set of expected statuses."""
    return "|".join(str(s) for s in statuses)
