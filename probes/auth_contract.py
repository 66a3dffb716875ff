"""The `auth_contract` prober: a protected endpoint must refuse no token and every forged one at the auth layer.

One request goes without credentials ("no token"), one per forged token (`forged`: garbage, wrong_signature,
alg_none, expired), all at once. Forged tokens carry Supabase's claims overlaid with `forged_claims`, so with
`forged_claims: {sub: "{user_id}"}` they impersonate the user in the path: a backend that decodes tokens without
verifying them then passes its owner check and is caught.

The judgement: `expected` is `expect.status` (default 401|403). The first row that holds decides (JUDGEMENT):

| #  | when                                                                        | outcome                      |
|----|-----------------------------------------------------------------------------|------------------------------|
| 1  | any request answered 2xx (even if another was rate limited)                 | auth_bypass                  |
| 1b | a refusal's body is a blocker's or WAF's (blocked, banned, denied by policy) | invalid_response + foreign  |
| 2  | any request got 429, or 503 with Retry-After (retry_after: largest wait)    | rate_limited (inconclusive)  |
| 3  | no token got 5xx (table_missing when the body names a missing relation)     | server_error, table_missing  |
| 4  | no token got an expected status and a forged token got 5xx                  | auth_bypass                  |
| 5  | no token got an expected status and a forged token got 404 or 422           | auth_bypass                  |
| 6  | a request got no answer (timeout, connection, TLS, DNS)                     | that outcome (no token's first) |
| 7  | no token got a status outside `expected`                                    | unexpected_status            |
| 8  | a forged token got another status outside `expected` (400, 405...)          | unexpected_status, no bypass |
| 9  | expect.body_regex or expect.json is set and a refusal's body does not match | invalid_response             |
| 10 | no body expectation is set and a refusal's body names CSRF                  | invalid_response             |
| 10b| a refusal's fingerprint is not the endpoint's own (declared or learned)     | invalid_response + foreign   |
| 11 | otherwise: every request refused with an expected status                    | ok                           |
| 12 | row 11, with `cors`: the preflight or a refusal's CORS headers are wrong     | cors_refused                 |

Rows 4 and 5: only a request that got past the auth layer reaches a handler that can crash, or routing and
validation of the path and body. Row 8: a 400 for a malformed header is common and proves nothing either way.
Rows 9 and 10: a 403 from a CSRF middleware or an owner check is not the auth layer's refusal; the sentence says
which layer seems to have answered. Rows 1b and 10b (probes/_refusal.py): a refusal from someone in front of the
backend (an IP blocker, a WAF, a gateway) proves nothing about auth. Its fingerprint (status, media type, JSON key
set, WWW-Authenticate scheme) is compared with `expect.refusal` or with the shapes learned from the check's first
good runs; either row puts `foreign_refusal` in details, which MonitorBlocked reads. Every sentence starts with the
method and path template.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitor.core.config import AuthContractCheck, Cors
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
from probes._refusal import (
    CSRF_WORDS,
    OWNER_WORDS,
    RATE_WORDS,
    REFUSAL_STATUSES,
    Learner,
    Shape,
    blocked,
    declared,
    foreign_refusal,
    layer,
    shape_of,
)
from probes.deps import Deps
from probes.kind import Kind

NO_TOKEN = "no_token"  # noqa: S105 - a details key, not a credential
"""The details key of the request sent without credentials; the forged ones use their variant name."""

_CSRF_ADVICE = (
    "refused by a CSRF layer before the auth layer: this check proves nothing about auth; send the CSRF header "
    "in `headers` or set expect.body_regex"
)


def _label(variant: str) -> str:
    return "no token" if variant == NO_TOKEN else f"forged {variant} token"


def who_answered(text: str, variant: str) -> str | None:
    """Which layer a refusal body suggests answered, as a clause; None when the body does not say."""
    if CSRF_WORDS.search(text):
        return "a CSRF middleware answered before the auth layer"
    if RATE_WORDS.search(text):
        return "a rate limiter answered, not the auth layer"
    if OWNER_WORDS.search(text):
        if variant == NO_TOKEN:
            return "an authorisation (owner) check answered, not the auth layer"
        return "an authorisation (owner) check answered, so the token was accepted as valid"
    return None


async def probe(check: AuthContractCheck, deps: Deps, deadline: float) -> ProbeResult:
    """Send the request without credentials and once per forged token, concurrently, and judge the answers."""
    from probes._jwt import forged_token  # PyJWT is loaded by the first auth_contract run, not by `import probes`

    target = deps.targets[check.target]
    secret = check.jwt_secret.get_secret_value() if check.jwt_secret is not None else None
    claims = check.filled_claims()
    # A configured Authorization header would defeat the point: every request carries only what we chose.
    base = request_headers(target, check, drop=("authorization",))
    variants: list[tuple[str, dict[str, str]]] = [(NO_TOKEN, base)]
    for variant in dict.fromkeys(check.forged):
        token = forged_token(variant, secret=secret, claims=claims)
        variants.append((variant, {**base, "Authorization": f"Bearer {token}"}))
    cors = check.cors
    if cors is not None:
        variants = [(name, {**headers, **_cors.origin_header(cors)}) for name, headers in variants]
    sending = [fetch(deps, check.target, check, deadline=deadline, headers=headers) for _, headers in variants]
    if cors is None:
        answers = await asyncio.gather(*sending)
        return judge(check, dict(zip((name for name, _ in variants), answers, strict=True)), learner_for(check, deps))
    wanted = _cors.methods(cors, check.method)
    # The variants' tasks are scheduled before the preflight's, so the run's first-request facts are no token's.
    answering = asyncio.gather(*sending)
    asking = asyncio.ensure_future(
        _cors.preflight(deps, check.target, cors, wanted[0], _cors.escaped(check.filled_path()), query=check.query,
                        deadline=deadline))
    answers = await answering
    sent = await asking
    named = dict(zip((name for name, _ in variants), answers, strict=True))
    return judge_cors(check, cors, sent, wanted[1:], judge(check, named, learner_for(check, deps)), named)


def judge_cors(check: AuthContractCheck, cors: Cors, sent: _cors.Preflight, extra_methods: list[str],
               verdict: ProbeResult, answers: dict[str, Fetched | Failed]) -> ProbeResult:
    """An `ok` verdict (every request refused as expected) is then judged as the frontend's browser would: the
    preflight, and the CORS headers on every refusal (the frontend must read a 401 to send its user to log in).
    Any other verdict stands: a bypass or a 5xx says more than the CORS headers."""
    if verdict.outcome is not Outcome.OK:
        return verdict
    refusals = {f"{_label(name)}'s refusal": got for name, got in answers.items() if isinstance(got, Fetched)}
    refused = _cors.judge(cors, sent, extra_methods, refusals)
    if refused is None:
        return verdict
    return ProbeResult(refused.outcome, f"{check.method} {check.path}: {refused.message}",
                       status_code=refused.status_code, details={**verdict.details, **refused.details},
                       retry_after=refused.retry_after)


def learner_for(check: AuthContractCheck, deps: Deps) -> Learner:
    """The check's refusal baseline: `expect.refusal` when declared, else learned (keyed by what it requests)."""
    spec = check.expect.refusal
    expected = declared(check.expect.status, spec.media_type, spec.keys) if spec is not None else None
    statuses = "|".join(str(code) for code in sorted(check.expect.status))
    return Learner(deps, f"auth_contract/{check.name}/{check.method} {check.path}/{statuses}", expected)


@dataclass(frozen=True, slots=True)
class _Run:
    """Every answer of one run, and what every row of the judgement needs to read them."""

    check: AuthContractCheck
    answers: dict[str, Fetched | Failed]
    responses: dict[str, Fetched]  # the answers that are responses, in the same order
    learner: Learner | None = None
    _shapes: dict[str, Shape] = field(default_factory=dict)  # filled on first use (row 10b, then ok)

    def shape(self, name: str) -> Shape:
        """The fingerprint of a variant's answer (parsed once per run)."""
        found = self._shapes.get(name)
        if found is None:
            found = self._shapes[name] = shape_of(self.responses[name])
        return found

    @property
    def expected(self) -> list[int]:
        return self.check.expect.status

    @property
    def anchor(self) -> Fetched | Failed:
        return self.answers[NO_TOKEN]

    @property
    def refused_without_token(self) -> bool:
        anchor = self.anchor
        return isinstance(anchor, Fetched) and anchor.status in self.expected

    def forged(self, when: Callable[[Fetched], bool]) -> dict[str, Fetched]:
        return {name: got for name, got in self.responses.items() if name != NO_TOKEN and when(got)}

    def retry_after(self) -> float | None:
        waits = [got.retry_after for got in self.responses.values()
                 if got.rate_limited and got.retry_after is not None]
        return max(waits) if waits else None

    def result(self, outcome: Outcome, message: str, **extra: Any) -> ProbeResult:
        details: dict[str, Any] = {
            name: (got.status if isinstance(got, Fetched) else (got.status or got.outcome.value))
            for name, got in self.answers.items()
        }
        return ProbeResult(outcome, f"{self.request}: {message}", status_code=self.anchor.status,
                           details={**details, **extra}, retry_after=self.retry_after())

    @property
    def request(self) -> str:
        """'GET /api/v1/users/{user_id}/settings': what every sentence starts with."""
        return f"{self.check.method} {self.check.path}"


def _said(answers: dict[str, Fetched]) -> str:
    return ", ".join(f"{_label(name)} got {got.status}" for name, got in answers.items())


def _after(answers: dict[str, Fetched]) -> str:
    return f"after {max(got.elapsed for got in answers.values()):.2f} s"


def _bypass_2xx(run: _Run) -> ProbeResult | None:
    passed = {n: g for n, g in run.responses.items() if 200 <= g.status < 300}
    if not passed:
        return None
    return run.result(
        Outcome.AUTH_BYPASS,
        f"{_said(passed)}: expected {status_list(run.expected)}; the endpoint answered without valid credentials",
    )


def _rate_limited(run: _Run) -> ProbeResult | None:
    limited = {n: g for n, g in run.responses.items() if g.rate_limited}
    if not limited:
        return None
    first = next(iter(limited.values()))
    return run.result(
        Outcome.RATE_LIMITED,
        f"rate limited: {_said(limited)}, {wait_phrase(run.retry_after())}; nothing was learned about auth this run",
        body_excerpt=first.excerpt(),
    )


def _server_error(run: _Run) -> ProbeResult | None:
    anchor = run.anchor
    if not isinstance(anchor, Fetched) or not is_server_error(anchor.status):
        return None
    broken = {n: g for n, g in run.responses.items() if is_server_error(g.status)}
    message = f"expected {status_list(run.expected)}, {_said(broken)} {_after(broken)}"
    for got in broken.values():
        missing = find_missing_relation(got.body)
        if missing is not None:
            return run.result(Outcome.TABLE_MISSING, f"{message}: {missing.describe()}",
                              tables_missing=list(missing.tables), code=missing.code, body_excerpt=got.excerpt())
    return run.result(Outcome.SERVER_ERROR, message, body_excerpt=anchor.excerpt())


def _bypass_crash(run: _Run) -> ProbeResult | None:
    if not run.refused_without_token:
        return None
    broken = run.forged(lambda got: is_server_error(got.status))
    if not broken:
        return None
    first = next(iter(broken.values()))
    missing = find_missing_relation(first.body)
    seen = f" ({missing.describe()})" if missing is not None else ""
    return run.result(
        Outcome.AUTH_BYPASS,
        f"{_said(broken)} while no token got {run.anchor.status}: the request got past the auth layer and crashed "
        f"the handler{seen}",
        body_excerpt=first.excerpt(),
    )


def _bypass_routed(run: _Run) -> ProbeResult | None:
    if not run.refused_without_token:
        return None
    routed = run.forged(lambda got: got.status in (404, 422))
    if not routed:
        return None
    first = next(iter(routed.values()))
    return run.result(
        Outcome.AUTH_BYPASS,
        f"{_said(routed)} while no token got {run.anchor.status}: the request got past the auth layer (only a "
        "request past it reaches routing or validation of the path and body)",
        body_excerpt=first.excerpt(),
    )


def _no_answer(run: _Run) -> ProbeResult | None:
    failures = {n: g for n, g in run.answers.items() if isinstance(g, Failed)}
    if not failures:
        return None
    name = NO_TOKEN if NO_TOKEN in failures else next(iter(failures))
    return run.result(failures[name].outcome, f"{_label(name)}: {failures[name].message}")


def _hint(got: Fetched, variant: str) -> str:
    said = who_answered(got.text(), variant)
    if said is None:
        found = layer(got, own_token=variant != NO_TOKEN)
        said = f"{found} answered" if found is not None else None
    return f"; {said}" if said is not None else ""


def _blocked(run: _Run) -> ProbeResult | None:
    walled = {n: g for n, g in run.responses.items() if g.status in REFUSAL_STATUSES and blocked(g)}
    if not walled:
        return None
    name, first = next(iter(walled.items()))
    return run.result(
        Outcome.INVALID_RESPONSE,
        f"{_said(walled)} {short_repr(first.excerpt())}: a blocker, WAF or gateway refused pam-monitor itself, not "
        "the auth layer; this run proves nothing about auth",
        body_excerpt=first.excerpt(), foreign_refusal=foreign_refusal(first, is_blocked=True), refused_by=name,
    )


def _foreign_shape(run: _Run) -> ProbeResult | None:
    expected = run.learner.expected() if run.learner is not None else None
    if expected is None:
        return None
    for name, got in run.responses.items():
        shape = run.shape(name)
        if expected.matches(shape):
            continue
        said = "declared in expect.refusal" if expected.declared else "learned from its first good runs"
        return run.result(
            Outcome.INVALID_RESPONSE,
            f"{_label(name)} refused with {shape.describe()}, but this endpoint's auth layer refuses with "
            f"{expected.describe()} ({said}): {_hint(got, name).removeprefix('; ') or 'another layer answered'}",
            body_excerpt=got.excerpt(), foreign_refusal=foreign_refusal(got, is_blocked=False),
        )
    return None


def _anchor_unexpected(run: _Run) -> ProbeResult | None:
    anchor = run.anchor
    if not isinstance(anchor, Fetched) or anchor.status in run.expected:
        return None
    return run.result(
        Outcome.UNEXPECTED_STATUS,
        f"expected {status_list(run.expected)}, no token got {anchor.status} after {anchor.elapsed:.2f} s"
        + _hint(anchor, NO_TOKEN),
        body_excerpt=anchor.excerpt(),
    )


def _forged_unexpected(run: _Run) -> ProbeResult | None:
    odd = run.forged(lambda got: got.status not in run.expected)
    if not odd:
        return None
    name, first = next(iter(odd.items()))
    return run.result(
        Outcome.UNEXPECTED_STATUS,
        f"expected {status_list(run.expected)}, {_said(odd)} while no token got {run.anchor.status}: not the auth "
        "layer's refusal, but not judged a bypass either (a 400 for a malformed header is common)" + _hint(first, name),
        body_excerpt=first.excerpt(),
    )


def _body_mismatch(got: Fetched, check: AuthContractCheck) -> str | None:
    expect = check.expect
    if expect.body_regex is not None and re.search(expect.body_regex, got.text()) is None:
        return f"regex {short_repr(expect.body_regex)}"
    if expect.json_fields:
        parsed, document, why = parse_json(got)
        problems = json_field_problems(document, expect.json_fields) if parsed else [why]
        if problems:
            return f"expect.json ({'; '.join(problems)})"
    return None


def _refusal_bodies(run: _Run) -> ProbeResult | None:
    expect = run.check.expect
    checked = expect.body_regex is not None or bool(expect.json_fields)
    for name, got in run.responses.items():
        if checked:
            mismatch = _body_mismatch(got, run.check)
            if mismatch is not None:
                return run.result(
                    Outcome.INVALID_RESPONSE,
                    f"{_label(name)} got {got.status} but the body does not match {mismatch}: "
                    f"{short_repr(got.excerpt())}" + _hint(got, name),
                    body_excerpt=got.excerpt(),
                )
        elif CSRF_WORDS.search(got.text()):
            return run.result(
                Outcome.INVALID_RESPONSE,
                f"{_label(name)} got {got.status} {short_repr(got.excerpt())}, {_CSRF_ADVICE}",
                body_excerpt=got.excerpt(),
            )
    return None


def _all_refused(run: _Run) -> ProbeResult:
    responses = run.responses
    said = ", ".join(f"{_label(n)} {g.status}" for n, g in responses.items())
    slowest = max(g.elapsed for g in responses.values())
    shapes: list[Shape] = [run.shape(name) for name in responses]
    learning = run.learner.observe_good(shapes) if run.learner is not None else ""
    note = f"; {learning}" if learning else ""
    return run.result(Outcome.OK, f"all {len(responses)} refused: {said} (slowest {slowest:.2f} s){note}")


JUDGEMENT: tuple[Callable[[_Run], ProbeResult | None], ...] = (
    _bypass_2xx,
    _blocked,
    _rate_limited,
    _server_error,
    _bypass_crash,
    _bypass_routed,
    _no_answer,
    _anchor_unexpected,
    _forged_unexpected,
    _refusal_bodies,
    _foreign_shape,
)
"""Rows 1 to 10b of the table in this module's docstring, in order; row 11 (`ok`) is what is left."""


def judge(
    check: AuthContractCheck, answers: dict[str, Fetched | Failed], learner: Learner | None = None
) -> ProbeResult:
    """Apply the judgement table (module docstring) to every variant's answer: the first row that holds decides.
    `learner` holds the endpoint's own refusal shape (row 10b) and learns it from good runs."""
    run = _Run(check, answers, {name: got for name, got in answers.items() if isinstance(got, Fetched)}, learner)
    for row in JUDGEMENT:
        verdict = row(run)
        if verdict is not None:
            return verdict
    return _all_refused(run)


def requests(check: AuthContractCheck) -> int:
    """One request without credentials plus one per distinct forged token, all sent at once (and the browser's
    preflight when the check has `cors`)."""
    return 1 + len(dict.fromkeys(check.forged)) + (check.cors is not None)


KIND = Kind(
    name="auth_contract",
    model=AuthContractCheck,
    probe=probe,
    outcomes=(
        *TRANSPORT_OUTCOMES,
        Outcome.AUTH_BYPASS,
        Outcome.RATE_LIMITED,
        Outcome.UNEXPECTED_STATUS,
        Outcome.SERVER_ERROR,
        Outcome.TABLE_MISSING,
        Outcome.INVALID_RESPONSE,
        Outcome.CORS_REFUSED,
    ),
    alerts=("ContractRegression", "AuthBypass", "TableMissing", "EndpointDown", "CertificateExpiring", "CorsBroken",
            "MonitorCredentialExpiring", "CheckFailed"),
    requests=requests,
)
