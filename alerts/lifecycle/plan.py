"""What the engine works out once per config load (one plan per enabled check) and what one step of it writes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from alerts.judge.rules import rules_for
from alerts.lifecycle.hold import Graph, graph
from alerts.lifecycle.machine import AlertState, Policy
from alerts.model import Notification
from monitor.core.config import Config, Maintenance
from monitor.core.kinds import kind_rules

_NO_LABELS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Plan:
    """What observe() needs about one enabled check, worked out once per config load or reload."""

    check: Any
    rules: tuple[str, ...]
    kind_rules: tuple[str, ...]  # every rule of its kind, enabled or not (a covered failure is no CheckFailed)
    windows: tuple[Maintenance, ...]  # global, then the check's own
    policy: Policy
    silenced: Policy  # the same policy while a maintenance window is open
    roots: tuple[str, ...]  # the enabled checks it depends on (alerts.lifecycle.hold)
    labels: Mapping[str, str]  # `depends_on` when it has roots
    bound: float  # how long a held firing waits for news of its roots


def plans_for(config: Config, rules_by_kind: Mapping[str, Sequence[str]]) -> tuple[dict[str, Plan], Graph]:
    """One plan per enabled check, and the dependency graph among them."""
    enabled = {c.name for c in config.checks if c.enabled}
    deps = graph(config, enabled)
    plans: dict[str, Plan] = {}
    for check in config.checks:
        if not check.enabled:
            continue
        policy = Policy(
            failure_threshold=check.failure_threshold, success_threshold=check.success_threshold,
            repeat_interval=config.alerts.repeat_interval, flap_window=config.alerts.flapping.window,
            flap_max=config.alerts.flapping.max_transitions, silenced=False,
        )
        roots = deps.roots.get(check.name, ())
        plans[check.name] = Plan(
            check=check, rules=rules_for(config, check, rules_by_kind),
            kind_rules=kind_rules(rules_by_kind.get(check.kind, ())),
            windows=(*config.alerts.maintenance, *check.maintenance),
            policy=policy, silenced=dataclasses.replace(policy, silenced=True), roots=roots,
            labels={"depends_on": ",".join(roots)} if roots else _NO_LABELS, bound=deps.bound.get(check.name, 0.0),
        )
    return plans, deps


@dataclass(slots=True)
class Batch:
    """What one step of the engine writes in one transaction."""

    changed: dict[str, AlertState] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    rows: list[tuple[str, Notification]] = field(default_factory=list)
