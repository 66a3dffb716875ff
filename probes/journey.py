"""The `journey` prober: ordered HTTP steps as a signed-in identity; a failure names its step and what it saw.

Each run gets a fresh `{run_id}`, the identity's token (sent as `Authorization: Bearer` on every step) and an
empty cookie jar: cookies set by one step's response go to the later steps of the same run (a CSRF double
submit needs that) and are dropped with the run. The whole journey shares the run's deadline.

A failing step's sentence is `step <name>: <METHOD> <path template>: ...`. A step that sent the identity's token
and got a 401 it did not expect is `identity_failed` (the token was refused: a wrong JWT secret, a revoked user),
never the backend's outage; a refusal whose body is a blocker's or WAF's carries `foreign_refusal` (http.py); a
rate-limited step is named in the sentence and in details (`step`, `rate_limited_step`). With `cors` each step
also sends the browser's preflight, and a step that passed is then judged as the frontend's browser would
(probes/_cors.py): `cors_refused` names the step like any other failure.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from monitor.core.config import (
    RUN_ID,
    SUB,
    HttpExpect,
    JourneyCheck,
    JourneyStep,
    RequestSpec,
    fill_json,
    fill_template,
    template_names,
)
from monitor.core.results import TRANSPORT_OUTCOMES, Outcome, ProbeResult
from monitor.core.secrets import Redactor
from probes import _cors, http
from probes._http import MISSING, Failed, Fetched, body_excerpt, fetch, json_path, parse_json, request_headers
from probes._refusal import blocked_refusal, gateway_challenge
from probes.deps import Deps
from probes.identity import Credential, Session, SignInFailed, credential_for, new_run_id
from probes.kind import Kind

_PASSED = (Outcome.OK, Outcome.SLOW)
_WITH_EXCERPT = (Outcome.UNEXPECTED_STATUS, Outcome.SERVER_ERROR, Outcome.RATE_LIMITED, Outcome.IDENTITY_FAILED)


@dataclass
class _Run:
    """One run's state: placeholder values, the cookie jar, the steps done so far and what to scrub."""

    values: dict[str, str]
    session: Session | None = None
    credential: Credential | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    hidden: Redactor = field(default_factory=Redactor)
    _hidden_values: list[str] = field(default_factory=list)

    def hide(self, value: str) -> None:
        """Never report `value` (a cookie or a value captured from a header or cookie)."""
        self._hidden_values.append(value)
        self.hidden.update(self._hidden_values)

    def scrub(self, text: str) -> str:
        """`text` without tokens, identity secrets, cookies."""
        text = self.hidden(text)
        return self.session.scrub(text) if self.session is not None else text


async def probe(check: JourneyCheck, deps: Deps, deadline: float) -> ProbeResult:
    """Run the steps in order until one fails or all pass, by `deadline` (event-loop time)."""
    run = _Run(values={RUN_ID: new_run_id(), **check.params})
    if check.identity is not None:
        got = await credential_for(deps, check.identity, deadline)
        if isinstance(got, SignInFailed):
            return got.result(check.identity, run_id=run.values[RUN_ID], steps=[])
        run.session, run.credential = got
        run.values[SUB] = run.credential.sub
    slow: tuple[JourneyStep, ProbeResult] | None = None
    last: Fetched | None = None
    for step in check.steps:
        answer, sent_token, sent = await _send(check, step, run, deps, deadline)
        run.phases[step.name] = answer.elapsed
        if isinstance(answer, Failed):
            return _failed(check, step, run, http.failed_result(answer), None)
        _keep_cookies(answer, run)
        if answer.status == 401 and run.session is not None and run.credential is not None:
            run.session.invalidate(run.credential)  # the next run asks for a new token
        if (answer.status == 401 and sent_token and 401 not in step.expect.status
                and blocked_refusal(answer) is None and not gateway_challenge(answer)):
            return _failed(check, step, run, _token_refused(check, answer), answer)
        verdict = http.assess(_filled_expect(step.expect, run.values), answer)
        if verdict.outcome not in _PASSED:
            return _failed(check, step, run, verdict, answer)
        problem = _capture(step, answer, run)
        if problem is not None:
            invalid = ProbeResult(Outcome.INVALID_RESPONSE, problem, status_code=answer.status)
            return _failed(check, step, run, invalid, answer)
        if check.cors is not None and sent is not None:
            refused = _cors.judge(check.cors, sent, _cors.methods(check.cors, step.method)[1:],
                                  {"the response": answer})
            if refused is not None:
                return _failed(check, step, run, refused, answer)
        run.steps.append(_step_record(step, verdict, answer.elapsed))
        if verdict.outcome is Outcome.SLOW and slow is None:
            slow = (step, verdict)
        last = answer
    return _passed(check, run, slow, last)


def _token_refused(check: JourneyCheck, answer: Fetched) -> ProbeResult:
    """A 401 to the identity's own token: the monitor cannot act as its user (not the backend's fault)."""
    return ProbeResult(
        Outcome.IDENTITY_FAILED,
        f"{check.identity}'s token was refused: 401 after {answer.elapsed:.2f} s (a wrong JWT secret, an expired or "
        "revoked user?); the monitor cannot act as the user, so this run says nothing about the backend",
        status_code=answer.status, details={"body_excerpt": answer.excerpt()},
    )


async def _send(
    check: JourneyCheck, step: JourneyStep, run: _Run, deps: Deps, deadline: float
) -> tuple[Fetched | Failed, bool, _cors.Preflight | None]:
    """The step's answer, whether the identity's token went with it (the step did not set its own), and with
    `cors` the browser's preflight (sent after the request, when it was answered)."""
    values = run.values
    # Braces left in the filled path are literal text: escape them from RequestSpec.filled_path's format_map.
    path = fill_template(step.path, values, lambda v: quote(v, safe="")).replace("{", "{{").replace("}", "}}")
    spec = RequestSpec.model_construct(
        method=step.method, path=path, params={}, headers={},
        query={name: fill_template(text, values) for name, text in step.query.items()},
        json_body=fill_json(step.json_body, values),
        body=fill_template(step.body, values) if step.body is not None else None,
    )
    target = deps.targets[check.target]
    headers = request_headers(target, spec)
    if run.credential is not None:
        headers = run.credential.apply(headers)
    sent_token = run.credential is not None and not any(n.lower() == "authorization" for n in step.headers)
    for name, secret in step.headers.items():
        # The step's own header replaces one of the same name in any case (an Authorization of its own too).
        headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
        headers[name] = fill_template(secret.get_secret_value(), values)
    if check.cors is not None:
        headers.update(_cors.origin_header(check.cors))
    if run.cookies:
        jar = "; ".join(f"{name}={value}" for name, value in run.cookies.items())
        own = next((k for k in headers if k.lower() == "cookie"), None)
        headers[own or "Cookie"] = f"{headers[own]}; {jar}" if own else jar
    answer = await fetch(deps, check.target, spec, deadline=deadline, headers=headers)
    sent: _cors.Preflight | None = None
    if check.cors is not None and isinstance(answer, Fetched):
        # After the step's request, so the run's first-request facts (ProbeResult.http) are the first step's.
        sent = await _cors.preflight(deps, check.target, check.cors, step.method, path, query=spec.query,
                                     deadline=deadline)
    return answer, sent_token, sent


def _keep_cookies(answer: Fetched, run: _Run) -> None:
    """Add the response's cookies to the run's jar; a Max-Age of 0 or less, an Expires in the past or an empty
    value removes one. Read by hand, not with http.cookies: SimpleCookie drops a whole header over one attribute
    it does not know (Partitioned, Priority)."""
    now = time.time()
    for header in answer.headers.get_list("set-cookie"):
        first, *attributes = header.split(";")
        name, sep, value = first.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            continue
        gone = value == ""
        for attribute in attributes:
            key, _, text = attribute.partition("=")
            key, text = key.strip().lower(), text.strip()
            if key == "max-age" and text.lstrip("-").isdigit():
                gone = gone or int(text) <= 0
            elif key == "expires":
                with contextlib.suppress(TypeError, ValueError, IndexError):
                    gone = gone or email.utils.parsedate_to_datetime(text).timestamp() <= now
        if gone:
            run.cookies.pop(name, None)
        else:
            run.cookies[name] = value
            run.hide(value)


def _filled_expect(expect: HttpExpect, values: dict[str, str]) -> HttpExpect:
    """The step's expectations with placeholders filled (JSON string values; body_regex with escaped values)."""
    update: dict[str, Any] = {}
    if expect.json_fields:
        filled = fill_json(expect.json_fields, values)
        if filled != expect.json_fields:
            update["json_fields"] = filled
    if expect.body_regex is not None and template_names(expect.body_regex):
        update["body_regex"] = fill_template(expect.body_regex, values, re.escape)
    return expect.model_copy(update=update) if update else expect


def _capture(step: JourneyStep, answer: Fetched, run: _Run) -> str | None:
    """Store the step's captures in the run's values; a sentence naming the first one that failed, if any."""
    document: Any = None
    parsed: bool | None = None
    for name, source in step.capture.items():
        kind, _, where = source.partition(".")
        value: str | None = None
        if kind == "json":
            if parsed is None:
                parsed, document, why = parse_json(answer)
                if not parsed:
                    return f"cannot capture {name} from {source}: {why}"
            found = json_path(document, where)
            if isinstance(found, str):
                value = found
            elif found is not MISSING and found is not None:
                value = json.dumps(found, separators=(",", ":"))  # a number, a boolean, an object or a list
        elif kind == "header":
            value = answer.headers.get(where)
            if value is not None:
                run.hide(value)
        else:
            value = run.cookies.get(where)
        if value is None:
            return f"cannot capture {name}: the response has no {source}"
        run.values[name] = value
    return None


def _step_record(step: JourneyStep, verdict: ProbeResult, elapsed: float) -> dict[str, Any]:
    return {"name": step.name, "status": verdict.status_code, "outcome": verdict.outcome.value,
            "elapsed_s": round(elapsed, 4)}


def _failed(
    check: JourneyCheck, step: JourneyStep, run: _Run, verdict: ProbeResult, answer: Fetched | None
) -> ProbeResult:
    """The journey's result when `step` failed: the step's outcome, its name first in the sentence."""
    run.steps.append(_step_record(step, verdict, run.phases.get(step.name, 0.0)))
    message = f"step {step.name}: {step.method} {step.path}: {verdict.message}"
    details: dict[str, Any] = {"step": step.name, "steps": run.steps, "run_id": run.values[RUN_ID],
                               "expected": list(step.expect.status)}
    if verdict.outcome is Outcome.RATE_LIMITED:
        details["rate_limited_step"] = step.name
    if check.identity is not None:
        details["identity"] = check.identity
    details.update({k: v for k, v in verdict.details.items() if k != "bytes"})
    if "body_excerpt" in details and answer is not None:
        # Scrubbed before it is cut: a token echoed across the cut would otherwise survive in part.
        details["body_excerpt"] = body_excerpt(run.scrub(answer.text()).encode())
    excerpt = details.get("body_excerpt")
    if verdict.outcome in _WITH_EXCERPT and isinstance(excerpt, str) and excerpt:
        message += f": {excerpt}"
    missing = details.get("tables_missing")
    if isinstance(missing, list) and missing:
        details["table"] = missing[0]
    return ProbeResult(verdict.outcome, run.scrub(message), status_code=verdict.status_code, details=details,
                       phases=dict(run.phases), retry_after=verdict.retry_after)


def _passed(
    check: JourneyCheck, run: _Run, slow: tuple[JourneyStep, ProbeResult] | None, last: Fetched | None
) -> ProbeResult:
    total = sum(run.phases.values())
    listing = ", ".join(f"{s['name']} {s['status']} ({s['elapsed_s']:.2f} s)" for s in run.steps)
    who = f" as {check.identity}" if check.identity is not None else ""
    details: dict[str, Any] = {"steps": run.steps, "run_id": run.values[RUN_ID]}
    if check.identity is not None:
        details["identity"] = check.identity
    status = last.status if last is not None else None
    if slow is not None:
        step, verdict = slow
        details["step"] = step.name
        message = (f"step {step.name}: {step.method} {step.path}: {verdict.message}; {len(run.steps)} steps "
                   f"passed{who}: {listing}")
        return ProbeResult(Outcome.SLOW, run.scrub(message), status_code=status, details=details,
                           phases=dict(run.phases))
    message = f"{len(run.steps)} steps ok{who} in {total:.2f} s: {listing}"
    return ProbeResult(Outcome.OK, run.scrub(message), status_code=status, details=details, phases=dict(run.phases))


def phases(check: JourneyCheck) -> tuple[str, ...]:
    """One phase per step, named after it (step names come from the config: a bounded label set)."""
    return tuple(step.name for step in check.steps)


KIND = Kind(
    name="journey",
    model=JourneyCheck,
    probe=probe,
    outcomes=(
        *TRANSPORT_OUTCOMES,
        Outcome.SLOW,
        Outcome.UNEXPECTED_STATUS,
        Outcome.SERVER_ERROR,
        Outcome.RATE_LIMITED,
        Outcome.TABLE_MISSING,
        Outcome.INVALID_RESPONSE,
        Outcome.IDENTITY_FAILED,
        Outcome.CORS_REFUSED,
    ),
    alerts=("ContractRegression", "TableMissing", "CertificateExpiring", "CorsBroken", "MonitorCredentialExpiring",
            "CheckFailed"),
    phases=phases,
    # One request per step (for pacing under a target's max_rate), sent one after the other; with `cors` each
    # step's preflight too.
    requests=lambda check: len(check.steps) * (1 if check.cors is None else 2),
    per_step=True,  # a failing step is an alert instance of its own (label `step`)
)
