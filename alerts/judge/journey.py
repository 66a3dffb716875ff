"""A journey's results judged step by step: which steps ran and passed, and each step's alert instances.

An alert instance of a journey is per (alertname, check, step[, table]): the failing (or slow) step is judged by
the rule with what is remembered about that step; the steps that passed before it are GOOD; the steps after it did
not run and say nothing. Every rule that builds its keys and labels from `Facts.step` is step-aware this way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING

from alerts.model import CheckMemory, Observation, Signal
from monitor.core.results import Outcome, Result

if TYPE_CHECKING:
    from alerts.judge.rules import Facts

_GOOD = frozenset({Outcome.OK, Outcome.SLOW})
KeyOf = Callable[[str, str, str, str], str]
"""`alert_key(alertname, check, table, step)`."""


def steps_of(result: Result) -> list[tuple[str, str, int | None]]:
    """(name, outcome, status) of each step a journey result ran, in order."""
    listed = result.details.get("steps")
    if not isinstance(listed, list | tuple):
        return []
    out: list[tuple[str, str, int | None]] = []
    for item in listed:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            status = item.get("status")
            out.append((item["name"], str(item.get("outcome", "")),
                        status if isinstance(status, int) and not isinstance(status, bool) else None))
    return out


def passed_steps(result: Result) -> dict[str, int]:
    """Each step that passed in this run, with the status it answered (the step's own `from`)."""
    return {name: status for name, outcome, status in steps_of(result)
            if outcome in _GOOD and status is not None}


def per_step(facts: Facts, rules: Collection[str], judge: Callable[[Facts], list[Observation]],
             key_of: KeyOf) -> list[Observation]:
    """A journey result judged step by step: the steps that passed are GOOD for every rule (with any of their known
    table instances); the failing (or slow) step is judged by `judge` (every rule, CheckFailed included) with that
    step's memory; later steps not at all. A result that names no step (the run was stopped before its steps
    reported, or a probe bug) is judged for the check as a whole. `key_of(alertname, check, table, step)` names an
    instance."""
    result, check = facts.result, facts.check
    judged = result.details.get("step")
    out: list[Observation] = []
    for name, outcome, _ in steps_of(result):
        if name == judged or outcome not in _GOOD:
            continue
        for alertname in rules:
            key = key_of(alertname, check.name, "", name)
            out.append(Observation(key, alertname, check.name, Signal.GOOD))
            out.extend(Observation(k, alertname, check.name, Signal.GOOD) for k in facts.known
                       if k.startswith(key + "/"))
    if not isinstance(judged, str) or not judged:
        return out + judge(facts)
    status = facts.memory.steps.get(judged)
    step_memory = CheckMemory(last_good_status=status, last_good_outcome=None if status is None else "ok",
                              rate_limited_since=facts.memory.rate_limited_since)
    return out + judge(facts._replace(memory=step_memory, step=judged))
