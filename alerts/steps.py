"""A journey's results judged step by step: which steps ran and passed, and each step's alert instances.

An alert instance of a journey is per (alertname, check, step[, table]): the failing (or slow) step is judged by
the rule with what is remembered about that step; the steps that passed before it are GOOD; the steps after it did
not run and say nothing. Every rule that builds its keys and labels from `Facts.step` is step-aware this way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from alerts.model import CheckMemory, Observation, Signal
from monitor.core.results import Outcome, Result

if TYPE_CHECKING:
    from alerts.rules import Evaluate, Facts

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


def per_step(alertname: str, facts: Facts, judge: Evaluate, key_of: KeyOf) -> list[Observation]:
    """A journey result judged step by step: the failing (or slow) step by the rule, with that step's memory;
    the steps that passed GOOD (with any of their known table instances); later steps not at all. `judge` is
    the rule's own evaluation, `key_of(alertname, check, table, step)` names an instance."""
    result, check = facts.result, facts.check
    judged = result.details.get("step")
    out: list[Observation] = []
    for name, outcome, _ in steps_of(result):
        if name == judged or outcome not in _GOOD:
            continue
        key = key_of(alertname, check.name, "", name)
        out.append(Observation(key, alertname, check.name, Signal.GOOD))
        out.extend(Observation(k, alertname, check.name, Signal.GOOD) for k in facts.known
                   if k.startswith(key + "/"))
    if not isinstance(judged, str) or not judged:
        return out
    status = facts.memory.steps.get(judged)
    step_memory = CheckMemory(last_good_status=status, last_good_outcome=None if status is None else "ok")
    found = judge(alertname, facts._replace(memory=step_memory, step=judged))
    if alertname == "ContractRegression" and status is None:
        # A step that never answered as expected has no `from`: it is not a regression (DESIGN §4).
        found = [o for o in found if o.signal is not Signal.BAD]
    return out + found
