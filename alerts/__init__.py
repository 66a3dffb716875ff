"""Alerting: built-in rules, a persistent alert state machine, and notification sinks (DESIGN §4, §5).

Public surface: `AlertEngine` (what the daemon uses), `step`/`AlertState`/`Policy` (the pure state machine),
`evaluate` (the rules) and `Notification`. Everything else is private to the package.
"""

from __future__ import annotations

from alerts.engine import NOTIFICATION_RESULTS, AlertEngine
from alerts.machine import Action, ActionKind, AlertState, Policy, Status, step
from alerts.model import Notification
from alerts.rules import ALERTNAMES, Observation, Signal, evaluate

__all__ = [
    "ALERTNAMES",
    "NOTIFICATION_RESULTS",
    "Action",
    "ActionKind",
    "AlertEngine",
    "AlertState",
    "Notification",
    "Observation",
    "Policy",
    "Signal",
    "Status",
    "evaluate",
    "step",
]
