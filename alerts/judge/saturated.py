"""MonitorSaturated: the daemon skipped runs because it could not keep up (it is the monitor, not the target).

The daemon hands the engine its skipped-run count (every reason, since start) every `EVERY` seconds
(`AlertEngine.saturation`). One evaluation is BAD when runs were skipped since the previous one, GOOD otherwise.
Two BAD evaluations in a row fire it (runs skipped for at least `EVERY` seconds, not one blip); `QUIET_EVALUATIONS`
GOOD ones in a row (a quiet minute) resolve it. It goes to every sink, with labels alertname, severity and service
plus the external labels, and is persisted like any alert, under the key `MonitorSaturated`.
"""

from __future__ import annotations

from alerts.judge.rules import RULES, daemon_labels
from alerts.lifecycle.machine import Policy
from alerts.model import Observation, Signal
from monitor.core.config import AlertName, Config

SATURATED: AlertName = "MonitorSaturated"
EVERY = 5.0
"""Seconds between two evaluations (the daemon's call of AlertEngine.saturation)."""
FIRING_EVALUATIONS = 2
QUIET_EVALUATIONS = 12


def enabled(config: Config) -> bool:
    """Whether the rule is on (alerts.rules.MonitorSaturated.enabled, default true)."""
    override = config.alerts.rules.get(SATURATED)
    return override is None or override.enabled


def policy(config: Config, *, silenced: bool) -> Policy:
    """The state-machine timing of MonitorSaturated (fixed thresholds; repeat and flapping as configured)."""
    return Policy(
        failure_threshold=FIRING_EVALUATIONS, success_threshold=QUIET_EVALUATIONS,
        repeat_interval=config.alerts.repeat_interval, flap_window=config.alerts.flapping.window,
        flap_max=config.alerts.flapping.max_transitions, silenced=silenced,
    )


def observe(config: Config, skipped: int) -> Observation:
    """One evaluation: BAD when `skipped` runs (> 0) were skipped since the previous one."""
    if skipped <= 0:
        return Observation(SATURATED, SATURATED, "", Signal.GOOD)
    annotations = {
        "summary": f"pam-monitor skipped {skipped} run{'s' if skipped != 1 else ''} in the last {EVERY:g} s: it "
                   "cannot keep up with its checks; the results it reports stay honest, there are fewer of them",
        "description": f"{config.service}: runs skipped because the monitor itself is saturated (event-loop lag, "
                       "its own request slots, or runs that started too late), not because a target failed",
        "skipped": str(skipped),
        "runbook": RULES[SATURATED].runbook,
    }
    return Observation(SATURATED, SATURATED, "", Signal.BAD, daemon_labels(config, SATURATED), annotations)


__all__ = ["EVERY", "SATURATED", "enabled", "observe", "policy"]
