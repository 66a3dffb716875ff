"""Shared helpers for the HTTP probers: capped streaming fetch, JSON expectations, missing tables, Retry-After.

Why a request failed (the exception's cause chain -> outcome and sentence) is in probes/_failures.py; `Failed`
and `classify_failure` are re-exported here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.utils
import json
import math
import re
import time
from collections.abc import AsyncIterator, Collection, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx

from monitor.core.config import RequestSpec, Target, as_matcher
from monitor.core.results import Outcome, ProbeResult
from probes._failures import Failed as Failed
from probes._failures import classify_failure as classify_failure
from probes._failures import clean_text
from probes.deps import Deps, current_wire
from probes.kind import C, Prober
from probes.wire import BodyStream, Exchange, Prepared, Trace, prepare

EXCERPT_CHARS = 200
# Scanning more than this for a relation name buys nothing: error bodies are short.
_SCAN_CHARS = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class Fetched:
    """A response that arrived: status, headers and at most `cap` bytes of body.

    `retry_after` is the wait its Retry-After header asks for, in seconds from when it arrived (None without a
    usable header).
    """

    status: int
    raw_headers: list[tuple[bytes, bytes]]
    body: bytes
    truncated: bool
    elapsed: float
    cap: int
    retry_after: float | None = None
    http_version: str = "HTTP/1.1"
    # The Content-Length the server announced; -1 when it sent none (chunked, or read until close).
    content_length: int = -1
    trace: Trace | None = None

    @property
    def headers(self) -> httpx.Headers:
        """The response headers (built on each access: most probes never read them)."""
        return httpx.Headers(self.raw_headers)

    @property
    def rate_limited(self) -> bool:
        """A 429, or a 503 with a Retry-After header: the target is shedding load, so the answer is about
        neither the endpoint's contract nor its health (outcome rate_limited, inconclusive)."""
        return self.status == 429 or (self.status == 503 and "retry-after" in self.headers)

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
            raise _UnsendableHeader(f"header name {clean_text(repr(name), 60)} is not a valid HTTP token")
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
    transport failure comes back as `Failed` with its outcome; nothing a broken target does raises. A request
    that times out tells the run's `Wire` (probes.deps) when it reached the network (`Trace.wire_at`).
    """
    target = deps.targets[target_name]
    limit = deps.body_limit if cap is None else cap
    transport = deps.transport_for(target)
    clock = deps.clock
    loop = asyncio.get_running_loop()
    sent_at: float | None = None
    status: int | None = None
    trace = Trace()
    first = _FIRST_TRACE.get()
    if first is not None and not first:
        first.append(trace)
    budget = 0.0
    wire = current_wire()
    started, started_perf = loop.time(), time.perf_counter()
    try:
        sending = dict(headers) if headers is not None else request_headers(target, spec)
        prepared = _prepared(deps, target_name, target, spec, sending)
        async with asyncio.timeout_at(deadline):
            sent_at = clock.monotonic()
            budget = deadline - loop.time()
            exchange = await transport.send(prepared, trace)
            try:
                status = exchange.status
                body, truncated = await _read_capped(exchange, limit)
            finally:
                transport.release(exchange)
            wait = _header(exchange.headers, b"retry-after")
            return Fetched(
                status=status,
                raw_headers=exchange.headers,
                body=body,
                truncated=truncated,
                elapsed=clock.monotonic() - sent_at,
                cap=limit,
                http_version=exchange.http_version,
                content_length=exchange.content_length,
                trace=trace,
                retry_after=retry_after_seconds(wait, clock.time()) if wait is not None else None,
            )
    except httpx.InvalidURL as exc:
        return Failed(Outcome.INTERNAL_ERROR, f"cannot build the request URL: {exc}", 0.0)
    except _UnsendableHeader as exc:
        return Failed(Outcome.INTERNAL_ERROR, f"could not encode the request: {exc}", 0.0)
    except (TimeoutError, httpx.TransportError, httpx.DecodingError, OSError) as exc:
        if wire is not None and isinstance(exc, TimeoutError | httpx.TimeoutException):
            # The trace's clock is perf_counter, the deadline's the loop's: the wire moment is placed by offset.
            on_wire = started + (trace.wire_at - started_perf) if trace.wire_at else None
            wire.timed_out(started, on_wire, deadline)
        elapsed = _since(deps, sent_at)
        if isinstance(exc, TimeoutError):  # our deadline: we waited the budget; the rest is delivering the news
            elapsed = min(elapsed, budget)
        failed = classify_failure(exc, _host(target), status, elapsed, phase=trace.phase)
        return dataclasses.replace(failed, trace=trace)


_FIRST_TRACE: ContextVar[list[Trace] | None] = ContextVar("pam_monitor_first_trace", default=None)


def with_http_facts(probe: Prober[C]) -> Prober[C]:
    """`probe`, whose result also carries what the transport saw of its first request (ProbeResult.http).

    The first `fetch` a run starts records its trace here (through a context variable, so it works across the
    tasks of an `asyncio.gather`); probes need not pass anything along.
    """

    async def traced(check: C, deps: Deps, deadline: float) -> ProbeResult:
        seen: list[Trace] = []
        token = _FIRST_TRACE.set(seen)
        try:
            result = await probe(check, deps, deadline)
        finally:
            _FIRST_TRACE.reset(token)
        return dataclasses.replace(result, http=seen[0].facts()) if seen else result

    return traced


_PREPARED_MAX = 4096


def _prepared(deps: Deps, target_name: str, target: Target, spec: RequestSpec, headers: dict[str, str]) -> Prepared:
    """The request's bytes, built by httpx once per spec and header set and reused (the same every run).

    Keyed by the spec object itself (kept in the value, so its id cannot be reused while cached); specs built
    per run (postgrest tables) just rebuild, and the cache is emptied past 4,096 entries.
    """
    key = (target_name, id(spec), tuple(headers.items()))
    cache = deps.prepared
    hit = cache.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    _check_headers(headers)
    request = httpx.Request(
        spec.method,
        build_url(target, spec),
        params=spec.query or None,
        headers={"User-Agent": deps.user_agent, "Accept": "*/*", **headers},
        json=spec.json_body,
        content=spec.body.encode() if spec.body is not None else None,
    )
    prepared = prepare(request)
    if len(cache) >= _PREPARED_MAX:
        cache.clear()
    cache[key] = (spec, prepared)
    return prepared


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of a response header (`name` lower-case), decoded as Latin-1 like httpx does."""
    return next((value.decode("latin-1") for key, value in headers if key.lower() == name), None)


def _host(target: Target) -> str:
    return httpx.URL(target.base_url or "http://unknown").host


async def _read_capped(exchange: Exchange, cap: int) -> tuple[bytes, bool]:
    """At most `cap` bytes of the body; decoded by httpx when the server sent a Content-Encoding anyway."""
    chunks: AsyncIterator[bytes] = exchange.body()
    if any(name.lower() == b"content-encoding" and value.strip().lower() not in (b"", b"identity")
           for name, value in exchange.headers):
        response = httpx.Response(exchange.status, headers=exchange.headers, stream=BodyStream(exchange))
        chunks = response.aiter_bytes()
    buf = bytearray()
    async for chunk in chunks:
        room = cap - len(buf)
        if len(chunk) > room:
            buf += chunk[:room]
            return bytes(buf), True
        buf += chunk
    return bytes(buf), False


def _since(deps: Deps, sent_at: float | None) -> float:
    return 0.0 if sent_at is None else deps.clock.monotonic() - sent_at



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
    """One sentence per `expect.json` entry that does not hold, with the actual value beside the expectation.

    A value is compared for equality, or is a matcher (`one_of`, `exists`, `regex`: monitor/core/config/matchers.py,
    validated when the config loads).
    """
    problems = []
    for path, expected in fields.items():
        problem = _field_problem(json_path(document, path), expected)
        if problem is not None:
            problems.append(f"json field {path}: {problem}")
    return problems


def _field_problem(actual: Any, expected: Any) -> str | None:
    matcher = as_matcher(expected)
    got = "but the field is missing" if actual is MISSING else f"got {short_repr(actual)}"
    if matcher.op == "exists":
        if matcher.arg == (actual is not MISSING):
            return None
        return "expected to exist, but the field is missing" if matcher.arg else f"expected to be absent, {got}"
    if matcher.op == "one_of":
        if actual is not MISSING and any(same_json_value(option, actual) for option in matcher.arg):
            return None
        options = ", ".join(short_repr(option, 40) for option in matcher.arg)
        return f"expected one of {options if len(options) <= 160 else options[:157] + '...'}, {got}"
    if matcher.op == "regex":
        if isinstance(actual, str) and matcher.arg.search(actual) is not None:
            return None
        return f"expected a string matching regex {short_repr(matcher.arg.pattern)}, {got}"
    if actual is not MISSING and same_json_value(matcher.arg, actual):
        return None
    return f"expected {short_repr(matcher.arg)}, {got}"


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


# ---------------------------------------------------------------------------------------------- Retry-After


def retry_after_seconds(value: str, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds, or an HTTP-date less `now` (wall clock, epoch
    seconds), never below 0; None when the value is neither (RFC 9110 §10.2.3)."""
    text = value.strip()
    if re.fullmatch(r"\d{1,12}(\.\d+)?", text):
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # an HTTP-date is always GMT; parsedate gives a naive datetime for "-0000"
        moment = moment.replace(tzinfo=dt.UTC)
    wait = moment.timestamp() - now
    return max(wait, 0.0) if math.isfinite(wait) else None


def wait_phrase(seconds: float | None) -> str:
    """'retry after 30 s' for a sentence, or 'no usable Retry-After' when the target gave none."""
    return f"retry after {seconds:g} s" if seconds is not None else "no usable Retry-After"
