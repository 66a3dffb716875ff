"""The `http` prober: request a URL and assert status, JSON fields, body regex and latency, in that order."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from monitor.core.config import Cors, HttpCheck, HttpExpect
from monitor.core.results import TRANSPORT_OUTCOMES, Outcome, ProbeResult
from monitor.core.status import is_server_error
from probes import _cors
from probes._http import (
    Failed,
    Fetched,
    fetch,
    find_missing_relation,
    json_field_problems,
    parse_json,
    request_headers,
    short_repr,
    status_list,
    wait_phrase,
)
from probes._refusal import REFUSAL_STATUSES, blocked_refusal, foreign_refusal, gateway_challenge, layer
from probes.deps import Deps
from probes.kind import Kind

_LAYERED = frozenset({401, 403, 407, 451})


async def probe(check: HttpCheck, deps: Deps, deadline: float) -> ProbeResult:
    """Run one `http` check against its target, giving up at `deadline` (event-loop time)."""
    cors = check.cors
    if cors is None:
        got = await fetch(deps, check.target, check, deadline=deadline)
        verdict = failed_result(got) if isinstance(got, Failed) else assess(check.expect, got)
    else:
        verdict = await _with_cors(check, cors, deps, deadline)
    # Every sentence says where to look: the method and the path template (never the filled URL).
    return dataclasses.replace(verdict, message=f"{check.method} {check.path}: {verdict.message}")


async def _with_cors(check: HttpCheck, cors: Cors, deps: Deps, deadline: float) -> ProbeResult:
    """The request with `Origin`, then the browser's preflight (sent second so that the run's first-request facts,
    ProbeResult.http, describe the request itself): a failing request's verdict first (a 5xx is the endpoint's
    fault, not CORS's), then the preflight's and the response's CORS headers (probes/_cors.py)."""
    wanted = _cors.methods(cors, check.method)
    headers = request_headers(deps.targets[check.target], check, extra=_cors.origin_header(cors))
    got = await fetch(deps, check.target, check, deadline=deadline, headers=headers)
    if isinstance(got, Failed):
        return failed_result(got)
    sent = await _cors.preflight(deps, check.target, cors, wanted[0], _cors.escaped(check.filled_path()),
                                 query=check.query, deadline=deadline)
    verdict = assess(check.expect, got)
    if verdict.outcome not in (Outcome.OK, Outcome.SLOW):
        return verdict
    refused = _cors.judge(cors, sent, wanted[1:], {"the response": got})
    return verdict if refused is None else refused


def requests(check: HttpCheck) -> int:
    """The request, plus the browser's preflight when the check has `cors`."""
    return 1 if check.cors is None else 2


def failed_result(failed: Failed) -> ProbeResult:
    """The result for a request that produced no usable response."""
    return ProbeResult(failed.outcome, failed.message, status_code=failed.status)


def status_failure(expected: list[int], got: Fetched, *, shown: str | None = None) -> ProbeResult:
    """The result for a status outside `expected`: rate_limited, server_error, table_missing or unexpected_status.

    A 429, or a 503 with Retry-After, is `rate_limited` (inconclusive) with the wait the target asked for in
    `retry_after`. `shown` replaces the expected statuses in the sentence (voice's synthesis says "2xx").
    """
    message = f"expected {shown or status_list(expected)}, got {got.status} after {got.elapsed:.2f} s"
    details: dict[str, Any] = {"body_excerpt": got.excerpt()} if not 200 <= got.status < 300 else {}
    foreign = blocked_refusal(got)
    if foreign is not None:
        return _blocked(message, got, foreign, details)
    if gateway_challenge(got):
        details["foreign_refusal"] = foreign_refusal(got, is_blocked=False)
    if got.status in _LAYERED:
        found = layer(got)
        if found is not None:
            message += f"; {found} answered"
    if got.rate_limited:
        return ProbeResult(
            Outcome.RATE_LIMITED,
            f"rate limited: {message}, {wait_phrase(got.retry_after)}; this run says nothing about the endpoint",
            status_code=got.status,
            details=details,
            retry_after=got.retry_after,
        )
    if is_server_error(got.status):
        missing = find_missing_relation(got.body)
        if missing is not None:
            details["tables_missing"] = list(missing.tables)
            details["code"] = missing.code
            return ProbeResult(
                Outcome.TABLE_MISSING, f"{message}: {missing.describe()}", status_code=got.status, details=details
            )
        return ProbeResult(Outcome.SERVER_ERROR, message, status_code=got.status, details=details)
    return ProbeResult(Outcome.UNEXPECTED_STATUS, message, status_code=got.status, details=details)


def _blocked(message: str, got: Fetched, foreign: dict[str, Any], details: dict[str, Any]) -> ProbeResult:
    """A refusal whose body is a blocker's or WAF's: never ok, never the endpoint's own answer (foreign_refusal)."""
    return ProbeResult(
        Outcome.INVALID_RESPONSE,
        f"{message}: a blocker, WAF or gateway refused pam-monitor itself ({short_repr(got.excerpt()[:120])}); "
        "this run says nothing about the endpoint",
        status_code=got.status, details={**details, "foreign_refusal": foreign},
    )


def assess(expect: HttpExpect, got: Fetched) -> ProbeResult:
    """Apply `expect` to a response: status, then JSON fields, then body regex, then latency. An expected refusal
    whose body is a blocker's or WAF's is no answer of the endpoint: invalid_response (foreign_refusal)."""
    if got.status not in expect.status:
        return status_failure(expect.status, got)
    if got.status in REFUSAL_STATUSES:
        foreign = blocked_refusal(got)
        if foreign is not None:
            return _blocked(f"got {got.status} after {got.elapsed:.2f} s", got, foreign,
                            {"body_excerpt": got.excerpt()})
    details: dict[str, Any] = {"bytes": len(got.body)}
    if got.truncated:
        details["truncated"] = True
    if not 200 <= got.status < 300:
        details["body_excerpt"] = got.excerpt()

    def invalid(message: str) -> ProbeResult:
        return ProbeResult(Outcome.INVALID_RESPONSE, message, status_code=got.status, details=details)

    if expect.json_fields:
        parsed, document, why = parse_json(got)
        if not parsed:
            return invalid(f"expected JSON fields {', '.join(expect.json_fields)}, but {why}")
        problems = json_field_problems(document, expect.json_fields)
        if problems:
            return invalid("; ".join(problems))
    if expect.body_regex is not None and re.search(expect.body_regex, got.text()) is None:
        cut = f" (only the first {got.cap} bytes were read)" if got.truncated else ""
        return invalid(f"body ({len(got.body)} bytes) does not match regex {short_repr(expect.body_regex)}{cut}")
    if expect.max_latency is not None and got.elapsed > expect.max_latency:
        return ProbeResult(
            Outcome.SLOW,
            f"{got.status} after {got.elapsed:.2f} s, over the {expect.max_latency:.2f} s budget",
            status_code=got.status,
            details=details,
        )
    return ProbeResult(
        Outcome.OK, f"{got.status} after {got.elapsed:.2f} s", status_code=got.status, details=details
    )


KIND = Kind(
    name="http",
    model=HttpCheck,
    probe=probe,
    outcomes=(
        *TRANSPORT_OUTCOMES,
        Outcome.SLOW,
        Outcome.RATE_LIMITED,
        Outcome.UNEXPECTED_STATUS,
        Outcome.SERVER_ERROR,
        Outcome.TABLE_MISSING,
        Outcome.INVALID_RESPONSE,
        Outcome.CORS_REFUSED,
    ),
    alerts=("ContractRegression", "TableMissing", "EndpointDown", "CertificateExpiring", "CorsBroken",
            "MonitorCredentialExpiring", "CheckFailed"),
    requests=requests,
    # A health check: its 5xx is the endpoint down, where other HTTP kinds' 5xx is a contract or expectation broken.
    server_error_is_down=True,
)
