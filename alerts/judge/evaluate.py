"""How one result is judged: every rule of the check's kind on it, CheckFailed as the fallback, what is remembered.

`evaluate` runs the rules of judge/rules.py on a result (a journey's step by step, judge/journey.py); a failure no
rule turns BAD is a CheckFailed, so no failure is silent. A `rate_limited` result is inconclusive: no rule sees it,
until the check has been rate-limited for `alerts.rate_limited_after`; then it is a CheckFailed (pam-monitor
cannot see the endpoint). `remember` keeps what later results are judged against; `quiet` says which results the
engine may skip on a check with no alert state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from alerts.judge import credentials
from alerts.judge.certs import expiring
from alerts.judge.journey import passed_steps, per_step
from alerts.judge.rules import CHECK_FAILED, RULES, Facts, base_labels
from alerts.labels import ANNOTATION_LIMIT, alert_key, build_annotations, name_requests
from alerts.links import with_links
from alerts.model import CheckMemory, Observation, Signal
from monitor.core.config import Config
from monitor.core.kinds import kind_rules as kind_rules_of
from monitor.core.results import Outcome, Result

_GOOD = frozenset({Outcome.OK, Outcome.SLOW})
_NONE: Mapping[str, str] = MappingProxyType({})


def remember(memory: CheckMemory, result: Result) -> CheckMemory:
    """Update the memory with a result: a good one becomes the `from` side of a later regression, and so does each
    journey step that passed (its status, by step name), even in a run that failed at a later step; a rate-limited
    result starts (or continues) a rate-limited spell, which any other result ends."""
    steps = passed_steps(result)
    if steps and {**memory.steps, **steps} != memory.steps:
        memory = dataclasses.replace(memory, steps={**memory.steps, **steps})
    if result.outcome is Outcome.RATE_LIMITED:
        if memory.rate_limited_since is not None:
            return memory
        return dataclasses.replace(memory, rate_limited_since=result.started_at)
    if result.outcome in _GOOD:
        return CheckMemory(last_good_status=result.status_code, last_good_outcome=result.outcome.value,
                           steps=memory.steps)
    if memory.rate_limited_since is not None:
        return dataclasses.replace(memory, rate_limited_since=None)
    return memory


def evaluate(
    config: Config, check: Any, result: Result, memory: CheckMemory, known: Collection[str] = (),
    *, rules: Collection[str], kind_rules: Collection[str] | None = None, extra_labels: Mapping[str, str] = _NONE,
) -> list[Observation]:
    """Every alert instance this result says something about; instances it says nothing about are left out.

    `rules` is `rules_for(config, check, rules_by_kind)` (the engine works it out once per config, not per result);
    `kind_rules` are all the rules of the check's kind (default: `rules`): a failure that a rule disabled by
    configuration covers is not turned into a CheckFailed. `known` holds the keys of this check's alert instances
    that are active, so a table that stopped being reported missing on a passing run is seen as GOOD.
    `extra_labels` go on every alert (the engine adds `depends_on`).
    """
    facts = Facts(config, check, result, memory, known, extra_labels,
                  traits=kind_rules_of(rules if kind_rules is None else kind_rules))
    if result.outcome is Outcome.RATE_LIMITED:
        found = _rate_limited(facts) if CHECK_FAILED in rules else []
    elif kind_rules_of(rules if kind_rules is None else kind_rules).per_step:
        found = per_step(facts, rules, lambda step: _judge(step, rules, kind_rules), alert_key)
        if result.outcome in _GOOD:
            # A whole-journey instance (raised by a result that named no step, e.g. rate-limited before its first
            # step) is GOOD on a journey that passed: no step's instance would ever say so.
            said = {o.key for o in found}
            found += [Observation(k, k.split("/", 1)[0], check.name, Signal.GOOD) for k in known
                      if "/step=" not in k and k not in said and k.split("/")[1:2] == [check.name]]
    else:
        found = _judge(facts, rules, kind_rules)
    return with_links(config, check, [_named(o, check, result.message) for o in found])


def _named(obs: Observation, check: Any, sentence: str) -> Observation:
    """A BAD observation whose summary tells the result's sentence now also names the check's method and path (and
    step): every rule's, in one place. A summary about something else (a certificate's expiry) is left alone."""
    summary = obs.annotations.get("summary") if obs.signal is Signal.BAD else None
    if summary is None or sentence[:ANNOTATION_LIMIT // 2] not in summary:
        return obs
    named = name_requests(summary, check, obs.labels.get("step", ""))
    return obs if named == summary else obs._replace(annotations={**obs.annotations, "summary": named})


def _judge(facts: Facts, rules: Collection[str], kind_rules: Collection[str] | None) -> list[Observation]:
    """Every rule on the facts; CheckFailed last, BAD only when no other rule of the kind turned BAD."""
    out: list[Observation] = []
    failing, covered = facts.result.outcome is not Outcome.OK, False
    for alertname in rules if kind_rules is None else kind_rules:
        rule = RULES[alertname]
        if rule.fallback:
            continue
        found = rule.evaluate(alertname, facts)
        if failing and not covered and rule.covers:
            for o in found:
                if o.signal is Signal.BAD:
                    covered = True
                    break
        if kind_rules is None or alertname in rules:
            out.extend(found)
    if CHECK_FAILED in rules:
        out.extend(_check_failed(facts, covered))
    return out


def quiet(config: Config, result: Result) -> bool:
    """Whether a result can turn no alert BAD: an ok answer that reports no table missing, no certificate
    expiring within `alerts.cert_warning` and no credential within `alerts.credential_warning`. The engine does not
    evaluate it for a check with no alert state (every observation would be a GOOD about nothing)."""
    return (result.outcome is Outcome.OK and all(result.tables.values())
            and not result.details.get("tables_missing") and not expiring(config, result)
            and not credentials.expiring(config, result))


def spell(seconds: float) -> str:
    """A rate-limited spell as people say it: `10 min`, `45 s`."""
    return f"{int(seconds // 60)} min" if seconds >= 60 else f"{seconds:.0f} s"


def _check_failed(facts: Facts, covered: bool) -> list[Observation]:
    """GOOD on ok or when another alert of the check covers the failure; BAD on any other failing outcome."""
    check, result = facts.check, facts.result
    key = alert_key(CHECK_FAILED, check.name, step=facts.step)
    if result.outcome is Outcome.OK or covered:
        return [Observation(key, CHECK_FAILED, check.name, Signal.GOOD)]
    notes = build_annotations(result, RULES[CHECK_FAILED].runbook, step=facts.step)
    return [Observation(key, CHECK_FAILED, check.name, Signal.BAD, base_labels(facts, CHECK_FAILED), notes)]


def _rate_limited(facts: Facts) -> list[Observation]:
    """Nothing while the rate-limited spell is shorter than `alerts.rate_limited_after`; then CheckFailed BAD,
    confirmed (the spell is proof enough: it fires on the first result past the limit)."""
    result, since = facts.result, facts.memory.rate_limited_since
    length = result.finished_at - (result.started_at if since is None else since)
    if length < facts.config.alerts.rate_limited_after:
        return []
    # A journey is rate-limited at one step: that step's CheckFailed says so (one alert per step, not a second one
    # for the journey beside the step's).
    step = result.details.get("step") if facts.traits.per_step else None
    facts = facts._replace(step=step) if isinstance(step, str) and step else facts
    notes = build_annotations(result, RULES[CHECK_FAILED].runbook, step=facts.step)
    notes["summary"] = (f"pam-monitor cannot see this endpoint: rate-limited for {spell(length)} "
                        f"({result.message})")[:ANNOTATION_LIMIT]
    check = facts.check
    return [Observation(alert_key(CHECK_FAILED, check.name, step=facts.step), CHECK_FAILED, check.name, Signal.BAD,
                        base_labels(facts, CHECK_FAILED), notes, confirmed=True)]
