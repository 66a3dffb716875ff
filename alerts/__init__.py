"""Alerting: built-in rules, a persistent alert state machine, and notification sinks.

The daemon uses `AlertEngine` (`async with AlertEngine(config, rules_by_kind=..., registry=..., clock=...)`, then
`observe(result)`). The pure pieces are public too: the rules (`RULES`, `evaluate`, `rules_for`), the state
machine (`step`, `AlertState`, `Policy`), the sink interface (`SinkSpec`) and its registry (`SINKS`).

A result walks through four subpackages, driven by `engine`: `judge` (is it bad or good, for which alert: the rules
and their evaluation), `lifecycle` (what that does to the alert over time: the state machine, holds, maintenance),
`persist` (the SQLite state and outbox that survive a restart) and `sinks` (delivery to Alertmanager, PagerDuty,
Slack, webhooks). `model`, `labels` and `links` are the values they share. alerts.lifecycle.hold decides when a
dependent's alert may reach direct sinks; alerts.judge.readme_tables writes the README's tables.
Modules not re-exported here are the package's own business.
"""

from __future__ import annotations

from alerts.engine import AlertEngine, EngineStats
from alerts.judge.evaluate import evaluate
from alerts.judge.rules import ALERTNAMES, RULES, SEVERITIES, Rule, rules_for
from alerts.lifecycle.machine import Action, AlertState, Policy, Status, step
from alerts.model import Event, Notification, Observation, Signal
from alerts.sinks.delivery import NOTIFICATION_RESULTS
from alerts.sinks.registry import SINKS
from alerts.sinks.spec import SendResult, SinkSpec

__all__ = [
    "ALERTNAMES",
    "NOTIFICATION_RESULTS",
    "RULES",
    "SEVERITIES",
    "SINKS",
    "Action",
    "AlertEngine",
    "AlertState",
    "EngineStats",
    "Event",
    "Notification",
    "Observation",
    "Policy",
    "Rule",
    "SendResult",
    "Signal",
    "SinkSpec",
    "Status",
    "evaluate",
    "rules_for",
    "step",
]
