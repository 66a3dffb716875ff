"""The HTTP probers' request: build it, send it on the shared transport, read a capped body; Retry-After.

What a body is and how it is read (the cap, inflation, excerpts, missing tables) is in probes/_body.py; JSON
(a nesting limit, dotted paths, `expect.json`) in probes/_json.py; why a request failed (the exception's cause
chain -> outcome and sentence) in probes/_failures.py. Their names are re-exported here for the probers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx

from monitor.core.config import RequestSpec, Target
from monitor.core.results import Outcome, ProbeResult
from monitor.core.retry_after import retry_after_seconds as retry_after_seconds
from monitor.core.wiretime import current_wire
from probes import _json
from probes._body import EXCERPT_CHARS as EXCERPT_CHARS
from probes._body import MissingRelation as MissingRelation
from probes._body import body_excerpt as body_excerpt
from probes._body import content_encoding, read_body, undecoded_phrase
from probes._body import find_missing_relation as find_missing_relation
from probes._errors import LocalExhausted, TransportError
from probes._failures import Failed as Failed
from probes._failures import classify_failure as classify_failure
from probes._failures import clean_text
from probes._json import MISSING as MISSING
from probes._json import json_field_problems as json_field_problems
from probes._json import json_path as json_path
from probes._json import same_json_value as same_json_value
from probes._json import short_repr as short_repr
from probes._json import status_list as status_list
from probes.deps import Deps
from probes.kind import C, Prober
from probes.wire import Prepared, Trace, prepare


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
    # The Content-Encoding the body is still in ('' when decoded or never encoded): one pam-monitor cannot inflate.
    undecoded: str = ""
    # The redactor of the configured secrets (Deps.redact), applied to an excerpt before it is cut.
    scrub: Callable[[str], str] | None = field(default=None, compare=False, repr=False)

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
        """At most 200 printable characters of the body, for details of a non-2xx response (secrets removed)."""
        if self.undecoded:
            return f"({len(self.body)} bytes of {self.undecoded}-encoded body, not decoded)"
        return body_excerpt(self.body, self.scrub)


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

    The request goes out at once: the runner admitted the run (it holds the target's slots, monitor/admission.py)
    before its deadline started, so the deadline counts only time on the wire. `deadline` is event-loop time
    (the runner's, see `probes.kind.Prober`); `cap` defaults to deps.body_limit.
    A body longer than the cap is not read further: the response is closed and `truncated` is set. Every
    transport failure comes back as `Failed` with its outcome; nothing a broken target does raises. A request
    that times out tells the run's `Wire` (monitor.core.wiretime) when it reached the network (`Trace.wire_at`).
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
                body = await read_body(exchange.body(), content_encoding(exchange.headers), limit)
            finally:
                transport.release(exchange)
            wait = _header(exchange.headers, b"retry-after")
            return Fetched(
                status=status,
                raw_headers=exchange.headers,
                body=body.data,
                truncated=body.truncated,
                undecoded=body.undecoded,
                scrub=deps.redact,
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
    except (TimeoutError, TransportError, httpx.TransportError, httpx.DecodingError, OSError) as exc:
        if wire is not None and isinstance(exc, LocalExhausted):
            wire.exhausted(exc.cause)
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


def _since(deps: Deps, sent_at: float | None) -> float:
    return 0.0 if sent_at is None else deps.clock.monotonic() - sent_at



# ---------------------------------------------------------------------------------------------- JSON


def parse_json(fetched: Fetched) -> tuple[bool, Any, str]:
    """(ok, document, why-not) for a response body; JSON nested too deep is refused (probes/_json.py)."""
    if fetched.undecoded:
        return False, None, undecoded_phrase(fetched.undecoded)
    if fetched.truncated:
        return False, None, f"the body is longer than the {fetched.cap}-byte read cap, so it cannot be parsed"
    try:
        return True, _json.loads(fetched.body), ""
    except _json.JsonTooDeep as exc:
        return False, None, str(exc)
    except (ValueError, UnicodeDecodeError):
        # The header's value as sent may hold control characters: the sentence stays one printable line.
        kind = " ".join("".join(c if c.isprintable() else " " for c in fetched.content_type or "").split())
        return False, None, f"the body is not JSON ({kind or 'no content-type'}, {len(fetched.body)} bytes)"


# ---------------------------------------------------------------------------------------------- Retry-After


def wait_phrase(seconds: float | None) -> str:
    """'retry after 30 s' for a sentence, or 'no usable Retry-After' when the target gave none."""
    return f"retry after {seconds:g} s" if seconds is not None else "no usable Retry-After"
