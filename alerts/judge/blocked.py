"""MonitorBlocked{target}: the target refuses pam-monitor itself (an IP block, a WAF, a gateway's credentials).

Probes put `details["foreign_refusal"]` (probes/_refusal.py: `shape`, `blocked`, `excerpt`) on a result whose
answer was a refusal from someone other than the endpoint: a body with a block marker, or (auth_contract,
tenant_isolation) a refusal of another fingerprint than the endpoint's own. `Tracker` keeps, per target, the latest
such record of each of its checks (None once a check answers without one; a rate-limited result without one says
nothing). One evaluation, after every result of a check of the target:

- BAD when the target's health check shows a blocked body, or >= 2 of its checks do, or >= 2 of its checks show
  the same foreign shape (the health check among them when the target has one);
- GOOD when none of its checks shows a foreign refusal any more; otherwise nothing (one stray check neither fires
  nor resolves it).

Two BAD evaluations in a row fire it, two GOOD ones resolve it (fixed, like MonitorSaturated). One alert per target,
key `MonitorBlocked/target=<target>`, labels alertname, severity, service, target (plus the external labels). While
it is pending or firing, the target's other alerts are held back from the direct sinks (the engine asks
`AlertEngine._target_blocked`), and released when it ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from alerts.judge.rules import RULES, severity_of
from alerts.labels import ANNOTATION_LIMIT, label_name
from alerts.lifecycle.machine import AlertState, Policy
from alerts.model import Observation, Signal
from monitor.core.config import AlertName, Config
from monitor.core.results import Outcome, Result

NAME: AlertName = "MonitorBlocked"
FIRING_EVALUATIONS = 2
QUIET_EVALUATIONS = 2
BLIND = "every check of this target is blind until this clears (IP block, WAF, expired gateway credentials)"


def key(target: str) -> str:
    """The alert's key (one per target)."""
    return f"{NAME}/target={target}"


def owner(target: str) -> str:
    """The `check` field of its state: no check's name can look like it (check names hold no ':')."""
    return f"target:{target}"


def target_of(state: AlertState) -> str | None:
    """The target a MonitorBlocked state is about, or None for any other alert."""
    if state.alertname != NAME or not state.check.startswith("target:"):
        return None
    return state.check.removeprefix("target:")


def enabled(config: Config) -> bool:
    """Whether the rule is on (alerts.rules.MonitorBlocked.enabled, default true)."""
    override = config.alerts.rules.get(NAME)
    return override is None or override.enabled


def policy(config: Config, *, silenced: bool) -> Policy:
    """Its state-machine timing: fixed thresholds; repeat and flapping as configured."""
    return Policy(failure_threshold=FIRING_EVALUATIONS, success_threshold=QUIET_EVALUATIONS,
                  repeat_interval=config.alerts.repeat_interval, flap_window=config.alerts.flapping.window,
                  flap_max=config.alerts.flapping.max_transitions, silenced=silenced)


def foreign(result: Result) -> Mapping[str, Any] | None:
    """The result's foreign_refusal record, when it has a well-formed one."""
    record = result.details.get("foreign_refusal")
    if isinstance(record, Mapping) and isinstance(record.get("shape"), str):
        return record
    return None


class Tracker:
    """The latest foreign refusal of every check, per target (in memory: a restart learns it again in one round)."""

    def __init__(self) -> None:
        self._latest: dict[str, dict[str, Mapping[str, Any] | None]] = {}

    def observe(self, config: Config, check: Any, result: Result) -> Observation | None:
        """One evaluation of the check's target after this result; None when it says nothing."""
        record = foreign(result)
        if record is None and result.outcome is Outcome.RATE_LIMITED:
            return None  # inconclusive: neither shows a wall nor that it is gone
        per = self._latest.setdefault(check.target, {})
        if record is None and per.get(check.name) is None:
            per.pop(check.name, None)
            return None if per else Observation(key(check.target), NAME, owner(check.target), Signal.GOOD)
        per[check.name] = record
        if record is None:
            del per[check.name]
        return judge(config, check.target, per)

    def forget(self, live: Mapping[str, Any]) -> None:
        """Drop what is known of checks no longer configured (name -> check)."""
        for target, per in list(self._latest.items()):
            for name in [n for n in per if n not in live or live[n].target != target]:
                del per[name]
            if not per:
                del self._latest[target]


def judge(config: Config, target: str, per: Mapping[str, Mapping[str, Any] | None]) -> Observation | None:
    """BAD, GOOD (only when no check shows a foreign refusal) or None (nothing to say), as the module says."""
    seen = {name: record for name, record in per.items() if record is not None}
    if not seen:
        return Observation(key(target), NAME, owner(target), Signal.GOOD)
    health = config.targets[target].health_check if target in config.targets else None
    walled = sorted(name for name, record in seen.items() if record.get("blocked") is True)
    shapes = Counter(str(record["shape"]) for record in seen.values())
    shared = [shape for shape, count in shapes.items() if count >= 2
              and (health is None or (health in seen and str(seen[health]["shape"]) == shape))]
    if not ((health is not None and health in walled) or len(walled) >= 2 or shared):
        return None
    named = walled or sorted(name for name, record in seen.items() if str(record["shape"]) in shared)
    first = seen[health] if health is not None and health in named else seen[named[0]]
    labels = {label_name(k): str(v) for k, v in config.alerts.external_labels.items()}
    labels.update(alertname=NAME, severity=severity_of(config, NAME), service=config.service, target=target)
    excerpt = str(first.get("excerpt", ""))[:200]
    summary = (f"target {target} refuses pam-monitor itself: {', '.join(named)} answered {first['shape']} "
               f"({excerpt!r}); {BLIND}")
    notes = {
        "summary": summary[:ANNOTATION_LIMIT],
        "description": f"{config.service}: {len(named)} check(s) of target {target} were refused by something in "
                       f"front of it ({'a block-marker body' if walled else 'the same foreign refusal shape'}); "
                       "their own alerts are held behind this one",
        "checks": ", ".join(named)[:ANNOTATION_LIMIT],
        "shape": str(first["shape"]),
        "excerpt": excerpt,
        "runbook": RULES[NAME].runbook,
    }
    return Observation(key(target), NAME, owner(target), Signal.BAD, labels, notes)

