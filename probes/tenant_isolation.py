"""The `tenant_isolation` prober: as a signed-in identity, ask for ANOTHER user's resource; it must be refused.

Every run first proves the identity works (the control): it reads the identity's OWN resource (the same path with
the identity's user id in place of the user parameter, or `own_params`) and must get a 2xx in the same run. Both
requests go out at once. The judgement, first row that holds:

| when                                                                           | outcome                      |
|--------------------------------------------------------------------------------|------------------------------|
| the other user's resource answered 2xx                                         | auth_bypass                  |
| either answer is a refusal whose body is a blocker's or WAF's                  | invalid_response + foreign   |
| either is a 401/403/404 of another shape than the endpoint's own (learned)     | invalid_response + foreign   |
| the own read got no answer (timeout, connection...)                            | that outcome                 |
| the own read got 429                                                           | rate_limited                 |
| the own read got a 3xx or 4xx (401: the token was refused)                     | identity_failed              |
| the other read: 401, 403 or 404                                                | ok                           |
| the other read: 5xx, 429, anything else                                        | server_error..., rate_limited... |

An own read that got a 5xx passes the control (the token got past the auth layer; the backend failing is what
other checks report), and the sentence shows it. A refusal proves isolation only from a working identity: without
the own read, a broken identity (a wrong JWT secret, an expired password) gets 401 for everything and reads
"refused: ok" while isolation is gone. The refusal's shape (probes/_refusal.py) is `refusal` when declared, else
learned from the first good runs. The other user's data is never copied into the result: a 2xx reports its status
and size only. Every sentence starts with the method and path template.
"""

from __future__ import annotations

import asyncio
from typing import Any

from monitor.core.config import TenantIsolationCheck, path_placeholders
from monitor.core.results import TRANSPORT_OUTCOMES, Outcome, ProbeResult
from probes import http
from probes._http import Failed, Fetched, body_excerpt, fetch, request_headers
from probes._refusal import REFUSAL_STATUSES, Learner, blocked, declared, foreign_refusal, layer, shape_of
from probes.deps import Deps
from probes.identity import Session, SignInFailed, credential_for
from probes.kind import Kind

REFUSED = (401, 403, 404)


async def probe(check: TenantIsolationCheck, deps: Deps, deadline: float) -> ProbeResult:
    """Read the identity's own resource (the control) and the other user's, with its token, by `deadline`."""
    got = await credential_for(deps, check.identity, deadline)
    if isinstance(got, SignInFailed):
        return got.result(check.identity)
    session, credential = got
    headers = credential.apply(request_headers(deps.targets[check.target], check))
    other_read = fetch(deps, check.target, check, deadline=deadline, headers=headers)
    own_spec = _own_spec(check, deps, credential.sub)
    if own_spec is not None:
        answer, own = await asyncio.gather(
            other_read, fetch(deps, check.target, own_spec, deadline=deadline, headers=headers))
    else:
        answer, own = await other_read, None
    if (isinstance(answer, Fetched) and answer.status == 401) or (isinstance(own, Fetched) and own.status == 401):
        session.invalidate(credential)  # the next run asks for a new token
    return judge(check, answer, session, own=own, learner=learner_for(check, deps))


def _own_spec(check: TenantIsolationCheck, deps: Deps, sub: str) -> TenantIsolationCheck | None:
    """The check with the identity's own path values, made once per check and user (fetch caches by spec); None
    when there is no own read (own_read: false, or no placeholder names the user and own_params is not set)."""
    slot = f"tenant_isolation/own/{check.name}"
    kept = deps.resources.get(slot)
    if isinstance(kept, tuple) and kept[0] is check and kept[1] == sub:
        spec: TenantIsolationCheck | None = kept[2]
        return spec
    values = check.own_values(sub)
    spec = check.model_copy(update={"params": values}) if values is not None else None
    deps.resources[slot] = (check, sub, spec)
    return spec


def learner_for(check: TenantIsolationCheck, deps: Deps) -> Learner:
    """The refusal baseline of the owner check: `refusal` when declared, else learned from good runs."""
    spec = check.refusal
    expected = declared(list(REFUSED), spec.media_type, spec.keys) if spec is not None else None
    return Learner(deps, f"tenant_isolation/{check.name}/{check.method} {check.path}", expected)


def resource_noun(path: str) -> str:
    """What the path names, for sentences: its last segment that is not a placeholder ('settings')."""
    placeholders = path_placeholders(path)
    for segment in reversed([s for s in path.split("/") if s]):
        if not any(f"{{{name}}}" in segment for name in placeholders):
            return segment
    return "resource"


def judge(check: TenantIsolationCheck, answer: Fetched | Failed, session: Session, *,
          own: Fetched | Failed | None = None, learner: Learner | None = None) -> ProbeResult:
    """The outcome of a run: the other user's resource read (`answer`) and the identity's own (`own`, the control;
    None when own_read is off)."""
    request = f"{check.method} {check.path}"
    noun = resource_noun(check.path)
    details: dict[str, Any] = {"identity": check.identity, "refused": list(REFUSED)}
    if isinstance(own, Fetched | Failed):
        details["own_status"] = own.status if isinstance(own, Fetched) else (own.status or own.outcome.value)

    def result(outcome: Outcome, message: str, status: int | None, retry: float | None = None,
               **extra: Any) -> ProbeResult:
        return ProbeResult(outcome, session.scrub(f"{request}: {message}"), status_code=status,
                           details={**details, **extra}, retry_after=retry)

    if isinstance(answer, Fetched) and 200 <= answer.status < 300:
        return result(Outcome.AUTH_BYPASS, f"{check.identity} read another user's {noun}: {answer.status} after "
                      f"{answer.elapsed:.2f} s ({len(answer.body)} bytes); tenant isolation is broken",
                      answer.status, bytes=len(answer.body))
    for label, got in (("another user's", answer), ("its own", own)):
        if isinstance(got, Fetched) and got.status in REFUSAL_STATUSES and blocked(got):
            return result(Outcome.INVALID_RESPONSE, f"reading {label} {noun} got {got.status} "
                          f"{_quote(got, session)}: a blocker, WAF or gateway refused pam-monitor itself; isolation "
                          "not judged", got.status, body_excerpt=_excerpt(got, session),
                          foreign_refusal=_foreign(got, session, blocked_body=True))
    expected = learner.expected() if learner is not None else None
    for label, got in (("another user's", answer), ("its own", own)):
        if expected is not None and isinstance(got, Fetched) and got.status in REFUSED:
            shape = shape_of(got)
            if not expected.matches(shape):
                found = layer(got, own_token=True)
                return result(
                    Outcome.INVALID_RESPONSE,
                    f"reading {label} {noun}, {check.identity} was refused with {shape.describe()}, but this "
                    f"endpoint's owner check refuses with {expected.describe()}: "
                    f"{found + ' answered' if found else 'another layer answered'}",
                    got.status, body_excerpt=_excerpt(got, session),
                    foreign_refusal=_foreign(got, session, blocked_body=False))
    if own is not None:
        verdict = _own_failed(check, own, session, noun)
        if verdict is not None:
            message, outcome, status, extra = verdict
            retry = own.retry_after if isinstance(own, Fetched) and outcome is Outcome.RATE_LIMITED else None
            return result(outcome, message, status, retry, control="own_read", **extra)
    if isinstance(answer, Failed):
        failed = http.failed_result(answer)
        return result(failed.outcome, f"reading another user's {noun}: {failed.message}", failed.status_code)
    after = f"after {answer.elapsed:.2f} s"
    control = (f" (its own {noun}: {own.status})" if isinstance(own, Fetched) else
               " (no own-read control: set own_params to prove the identity works)")
    if answer.status in REFUSED:
        learning = learner.observe_good([shape_of(answer)]) if learner is not None else ""
        return result(Outcome.OK, f"{check.identity} was refused another user's {noun}: {answer.status} {after}"
                      f"{control}" + (f"; {learning}" if learning else ""), answer.status)
    # Scrubbed before it is cut: a token echoed across the cut would otherwise survive in part.
    details["body_excerpt"] = _excerpt(answer, session)
    if answer.status == 429 or (answer.status == 503 and "retry-after" in answer.headers):
        retry = _seconds(answer.headers.get("retry-after"))
        return ProbeResult(
            Outcome.RATE_LIMITED, session.scrub(f"{request}: rate-limited: {answer.status} {after}; isolation not "
                                                f"judged"),
            status_code=answer.status, details=details, retry_after=retry,
        )
    failed = http.status_failure(list(REFUSED), answer)
    return ProbeResult(failed.outcome, session.scrub(f"{request}: {failed.message}"), status_code=answer.status,
                       details={**failed.details, **details})


def _own_failed(check: TenantIsolationCheck, own: Fetched | Failed, session: Session,
                noun: str) -> tuple[str, Outcome, int | None, dict[str, Any]] | None:
    """Why the control failed (sentence, outcome, status, details), or None when the identity read its own data."""
    if isinstance(own, Failed):
        return f"reading its own {noun}: {own.message}", own.outcome, own.status, {}
    if 200 <= own.status < 300:
        return None
    said = f"{own.status} {_quote(own, session)}"
    if own.rate_limited:
        return (f"rate-limited reading its own {noun}: {said}; isolation not judged", Outcome.RATE_LIMITED,
                own.status, {"body_excerpt": _excerpt(own, session)})
    if own.status >= 500:
        # The token got past the auth layer (a 5xx comes from behind it): the identity works; the other read is
        # judged as usual and the sentence shows the own read's status. The backend's failure is other checks' news.
        return None
    why = ("its token was refused (a wrong JWT secret, an expired or revoked user?)" if own.status == 401
           else f"{layer(own) or 'the backend'} refused it")
    return (f"{check.identity} could not read its own {noun} (expected 2xx, got {said}): {why}; the monitor cannot "
            "act as the user, so a refusal of another user's data proves nothing", Outcome.IDENTITY_FAILED,
            own.status, {"body_excerpt": _excerpt(own, session)})


def _excerpt(got: Fetched, session: Session) -> str:
    # Scrubbed before it is cut: a token echoed across the cut would otherwise survive in part.
    return body_excerpt(session.scrub(got.text()).encode(), got.scrub)


def _quote(got: Fetched, session: Session) -> str:
    text = _excerpt(got, session)
    return repr(text[:120]) if text else "(empty body)"


def _foreign(got: Fetched, session: Session, *, blocked_body: bool) -> dict[str, Any]:
    record = foreign_refusal(got, is_blocked=blocked_body)
    record["excerpt"] = _excerpt(got, session)
    return record


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
        Outcome.IDENTITY_FAILED,
    ),
    alerts=("AuthBypass", "ContractRegression", "TableMissing", "CertificateExpiring", "CheckFailed"),
    requests=lambda check: 2,  # the own read (the control) and the other user's
)
