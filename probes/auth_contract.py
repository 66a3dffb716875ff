"""The `auth_contract` prober: no credentials and forged tokens must all be refused (401/403), never 2xx/5xx."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from monitor.core.config import AuthContractCheck
from monitor.core.results import TRANSPORT_OUTCOMES, Outcome, ProbeResult
from probes._http import (
    Failed,
    Fetched,
    fetch,
    find_missing_relation,
    request_headers,
    short_repr,
    status_list,
)
from probes.deps import Deps
from probes.kind import Kind

NO_TOKEN = "no_token"  # noqa: S105 - a details key, not a credential
"""The details key of the request sent without credentials; the forged ones use their variant name."""


def _label(variant: str) -> str:
    return "no token" if variant == NO_TOKEN else f"forged {variant} token"


async def probe(check: AuthContractCheck, deps: Deps, deadline: float) -> ProbeResult:
    """Send the request without credentials and once per forged token, concurrently, and judge the answers."""
    from probes._jwt import forged_token  # PyJWT is loaded by the first auth_contract run, not by `import probes`

    target = deps.targets[check.target]
    secret = check.jwt_secret.get_secret_value() if check.jwt_secret is not None else None
    # A configured Authorization header would defeat the point: every request carries only what we chose.
    base = request_headers(target, check, drop=("authorization",))
    variants: list[tuple[str, dict[str, str]]] = [(NO_TOKEN, base)]
    for variant in dict.fromkeys(check.forged):
        token = forged_token(variant, secret=secret)
        variants.append((variant, {**base, "Authorization": f"Bearer {token}"}))
    answers = await asyncio.gather(
        *(fetch(deps, check.target, check, deadline=deadline, headers=headers) for _, headers in variants)
    )
    return judge(check, dict(zip((name for name, _ in variants), answers, strict=True)))


def judge(check: AuthContractCheck, answers: dict[str, Fetched | Failed]) -> ProbeResult:
    """Apply the contract to every variant's answer; the worst finding wins (see DESIGN §3)."""
    details: dict[str, Any] = {
        name: (got.status if isinstance(got, Fetched) else (got.status or got.outcome.value))
        for name, got in answers.items()
    }
    responses = {name: got for name, got in answers.items() if isinstance(got, Fetched)}
    anchor = answers[NO_TOKEN]
    anchor_status = anchor.status
    expected = status_list(check.expect.status)
    slowest = max(got.elapsed for got in answers.values())

    def result(outcome: Outcome, message: str, **extra: Any) -> ProbeResult:
        return ProbeResult(outcome, message, status_code=anchor_status, details={**details, **extra})

    passed = [f"{_label(n)} got {g.status}" for n, g in responses.items() if 200 <= g.status < 300]
    if passed:
        return result(
            Outcome.AUTH_BYPASS,
            f"{', '.join(passed)}: expected {expected}; the endpoint answered without valid credentials",
        )

    broken = {n: g for n, g in responses.items() if g.status >= 500}
    if broken:
        said = ", ".join(f"{_label(n)} got {g.status}" for n, g in broken.items())
        first = next(iter(broken.values()))
        excerpt = {"body_excerpt": first.excerpt()}
        for got in broken.values():
            missing = find_missing_relation(got.body)
            if missing is not None:
                return result(
                    Outcome.TABLE_MISSING,
                    f"expected {expected}, {said} after {slowest:.2f} s: {missing.describe()}",
                    tables_missing=list(missing.tables),
                    code=missing.code,
                    **excerpt,
                )
        return result(Outcome.SERVER_ERROR, f"expected {expected}, {said} after {slowest:.2f} s", **excerpt)

    failures = {n: g for n, g in answers.items() if isinstance(g, Failed)}
    if failures:
        name, failed = (NO_TOKEN, failures[NO_TOKEN]) if NO_TOKEN in failures else next(iter(failures.items()))
        return result(failed.outcome, f"{_label(name)}: {failed.message}")

    assert isinstance(anchor, Fetched)  # every answer is a response once failures are handled
    if anchor.status not in check.expect.status:
        return result(
            Outcome.UNEXPECTED_STATUS,
            f"expected {expected}, {_label(NO_TOKEN)} got {anchor.status} after {anchor.elapsed:.2f} s",
            body_excerpt=anchor.excerpt(),
        )

    for name, got in responses.items():
        if got.status not in check.expect.status and got.status != anchor.status:
            return result(
                Outcome.AUTH_BYPASS,
                f"{_label(name)} got {got.status}, {_label(NO_TOKEN)} got {anchor.status}: "
                "it got past the auth layer",
                body_excerpt=got.excerpt(),
            )

    if check.expect.body_regex is not None:
        for name, got in responses.items():
            if re.search(check.expect.body_regex, got.text()) is None:
                return result(
                    Outcome.INVALID_RESPONSE,
                    f"{_label(name)} got {got.status} but the body does not match regex "
                    f"{short_repr(check.expect.body_regex)}",
                    body_excerpt=got.excerpt(),
                )

    said = ", ".join(f"{_label(n)} {g.status}" for n, g in responses.items())
    return result(Outcome.OK, f"all {len(responses)} refused: {said} (slowest {slowest:.2f} s)")


def requests(check: AuthContractCheck) -> int:
    """One request without credentials plus one per distinct forged token, all sent at once."""
    return 1 + len(dict.fromkeys(check.forged))


KIND = Kind(
    name="auth_contract",
    model=AuthContractCheck,
    probe=probe,
    outcomes=(
        *TRANSPORT_OUTCOMES,
        Outcome.AUTH_BYPASS,
        Outcome.UNEXPECTED_STATUS,
        Outcome.SERVER_ERROR,
        Outcome.TABLE_MISSING,
        Outcome.INVALID_RESPONSE,
    ),
    alerts=("ContractRegression", "AuthBypass", "TableMissing", "EndpointDown"),
    requests=requests,
)
