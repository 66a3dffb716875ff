"""The `tenant_isolation` prober: as a signed-in identity, ask for ANOTHER user's resource; it must be refused.

401, 403 and 404 are `ok`; a 2xx is `auth_bypass` (the identity read what is not its own); 5xx `server_error` (or
`table_missing` when the body names a missing relation); 429 `rate_limited`; anything else `unexpected_status`.
The other user's data is never copied into the result: a 2xx reports its status and size only.
"""

from __future__ import annotations

from typing import Any

from monitor.core.config import TenantIsolationCheck, path_placeholders
from monitor.core.results import TRANSPORT_OUTCOMES, Outcome, ProbeResult
from probes import http
from probes._http import Failed, Fetched, body_excerpt, fetch, request_headers
from probes.deps import Deps
from probes.identity import Session, SignInFailed, credential_for
from probes.kind import Kind

REFUSED = (401, 403, 404)


async def probe(check: TenantIsolationCheck, deps: Deps, deadline: float) -> ProbeResult:
    """Request the other user's resource with the identity's token and judge the answer, by `deadline`."""
    got = await credential_for(deps, check.identity, deadline)
    if isinstance(got, SignInFailed):
        return got.result(check.identity)
    session, credential = got
    headers = credential.apply(request_headers(deps.targets[check.target], check))
    answer = await fetch(deps, check.target, check, deadline=deadline, headers=headers)
    if isinstance(answer, Failed):
        failed = http.failed_result(answer)
        return ProbeResult(failed.outcome, session.scrub(failed.message), status_code=failed.status_code,
                           details={"identity": check.identity})
    if answer.status == 401:
        session.invalidate(credential)  # the next run asks for a new token
    return judge(check, answer, session)


def resource_noun(path: str) -> str:
    """What the path names, for sentences: its last segment that is not a placeholder ('settings')."""
    placeholders = path_placeholders(path)
    for segment in reversed([s for s in path.split("/") if s]):
        if not any(f"{{{name}}}" in segment for name in placeholders):
            return segment
    return "resource"


def judge(check: TenantIsolationCheck, answer: Fetched, session: Session) -> ProbeResult:
    """The outcome of one answer to a request for another user's resource."""
    after = f"after {answer.elapsed:.2f} s"
    request = f"{check.method} {check.path}"
    details: dict[str, Any] = {"identity": check.identity, "refused": list(REFUSED)}
    if 200 <= answer.status < 300:
        details["bytes"] = len(answer.body)
        return ProbeResult(
            Outcome.AUTH_BYPASS,
            f"{check.identity} read another user's {resource_noun(check.path)}: {answer.status} {after} "
            f"({request}, {len(answer.body)} bytes); tenant isolation is broken",
            status_code=answer.status, details=details,
        )
    if answer.status in REFUSED:
        return ProbeResult(
            Outcome.OK, f"{check.identity} was refused another user's {resource_noun(check.path)}: "
            f"{answer.status} {after}",
            status_code=answer.status, details=details,
        )
    # Scrubbed before it is cut: a token echoed across the cut would otherwise survive in part.
    details["body_excerpt"] = body_excerpt(session.scrub(answer.text()).encode())
    if answer.status == 429 or (answer.status == 503 and "retry-after" in answer.headers):
        retry = _seconds(answer.headers.get("retry-after"))
        return ProbeResult(
            Outcome.RATE_LIMITED, f"rate-limited: {answer.status} {after} ({request}); isolation not judged",
            status_code=answer.status, details=details, retry_after=retry,
        )
    failed = http.status_failure(list(REFUSED), answer)
    return ProbeResult(failed.outcome, session.scrub(failed.message), status_code=answer.status,
                       details={**failed.details, **details})


def _seconds(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


KIND = Kind(
    name="tenant_isolation",
    model=TenantIsolationCheck,
    probe=probe,
    outcomes=(
        *TRANSPORT_OUTCOMES,
        Outcome.AUTH_BYPASS,
        Outcome.UNEXPECTED_STATUS,
        Outcome.SERVER_ERROR,
        Outcome.RATE_LIMITED,
        Outcome.TABLE_MISSING,
        Outcome.INVALID_RESPONSE,
    ),
    alerts=("AuthBypass", "ContractRegression", "TableMissing", "CertificateExpiring", "CheckFailed"),
)
