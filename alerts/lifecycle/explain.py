"""What /status and the status page say about an active alert: when it started, since when it is in its state, and
why it is held, if it is, with the earliest moment the hold can end.

One entry per pending or firing alert (`AlertEngine.active_alerts`), then the MonitorWatchdog while it is up:
- `since`: when the alert started (its first bad result: pending, then firing), exactly the `startsAt` every sink
  receives for it (same clock, same RFC 3339 rounding); `state_since`: when it entered its current state.
- `flapping`: it changed state too often and is held firing until its check is steady (alerts.lifecycle.machine);
- `held_reason` / `held_until`: every hold in words, joined by "; ", and when the last of them can end at the
  earliest (null when one of them waits for something not known yet, or when nothing holds it).
Holds: flapping; a check it depends on failing, or not seen since, so PagerDuty, Slack and webhooks are not told
(alerts.lifecycle.hold); a maintenance window silencing its notifications. Pure: the engine hands in what it knows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from alerts.lifecycle.hold import Seen, Verdict, verdict
from alerts.lifecycle.machine import AlertState, Hold, Policy, Status, flap_hold
from alerts.lifecycle.maintenance import active_window, window_end
from alerts.lifecycle.plan import Plan
from alerts.links import LINK_ANNOTATIONS
from alerts.model import Notification
from monitor.core.clock import iso
from monitor.core.config import Config, Maintenance

DIRECT = "PagerDuty, Slack and webhooks"
"""The sinks a dependent's alert is held back from (Alertmanager gets it and inhibits it itself)."""


def entry(state: AlertState, holds: Sequence[Hold] = ()) -> dict[str, Any]:
    """The /status entry of one pending or firing alert (labels only: they never hold secrets)."""
    until = [h.until for h in holds if h.until is not None]
    return {
        "alertname": state.alertname,
        "state": state.status.value,
        "labels": dict(state.labels),
        "since": iso(state.started_at if state.started_at is not None else state.since),
        "state_since": iso(state.since),
        "flapping": state.flapping,
        "held_until": iso(max(until)) if holds and len(until) == len(holds) else None,
        "held_reason": "; ".join(h.reason for h in holds) or None,
        **{k: v for k, v in state.annotations.items() if k in LINK_ANNOTATIONS},  # runbook, dashboard, status
    }


def active(states: Iterable[AlertState], plans: Mapping[str, Plan], config: Config, now: float, *,
           root_seen: Callable[[str], Seen | None], seen: Mapping[str, Seen],
           watchdog: Notification | None, walled: Callable[[str], bool] = lambda target: False) -> list[dict[str, Any]]:
    """Pending and firing alerts (firing first, then by alertname and key), then the MonitorWatchdog while it is
    up: the /status entries with their holds explained. `walled(target)`: MonitorBlocked holds that target."""
    ordered = sorted((s for s in states if s.active), key=lambda s: (s.status is not Status.FIRING, s.alertname, s.key))
    entries = [entry(s, holds(s, plans.get(s.check), config, now, root_seen=root_seen, own=seen.get(s.check),
                              walled=walled))
               for s in ordered]
    return [*entries, watchdog_entry(watchdog)] if watchdog is not None else entries


def watchdog_entry(watchdog: Notification) -> dict[str, Any]:
    """The MonitorWatchdog's /status entry, from the notification Alertmanager gets (since: the daemon's start)."""
    return {
        "alertname": watchdog.alertname, "state": "firing", "labels": dict(watchdog.labels),
        "since": iso(watchdog.starts_at), "state_since": iso(watchdog.starts_at),
        "flapping": False, "held_until": None, "held_reason": None,
    }


def holds(state: AlertState, plan: Plan | None, config: Config, now: float, *,
          root_seen: Callable[[str], Seen | None], own: Seen | None,
          walled: Callable[[str], bool] = lambda target: False) -> list[Hold]:
    """Every hold on a firing alert (none on a pending one). `plan` is its check's (None for a daemon-level alert),
    `root_seen` what the engine knows of a root check, `own` what it knows of the alert's check."""
    if state.status is not Status.FIRING:
        return []
    found: list[Hold] = []
    policy = plan.policy if plan is not None else Policy(
        flap_window=config.alerts.flapping.window, flap_max=config.alerts.flapping.max_transitions)
    flapping = flap_hold(state, policy)
    if flapping is not None:
        found.append(flapping)
    if state.held and plan is not None and walled(plan.check.target):
        found.append(Hold(None, f"target {plan.check.target} refuses pam-monitor itself (MonitorBlocked): not sent "
                                f"to {DIRECT} until that ends"))
    elif state.held and plan is not None and plan.roots:
        found.append(dependency_hold({r: root_seen(r) for r in plan.roots}, own, now=now, release_at=state.release_at,
                                     started_at=state.started_at, outage=state.outage))
    windows = plan.windows if plan is not None else tuple(config.alerts.maintenance)
    window = active_window(windows, now) if windows else None
    if window is not None:
        found.append(maintenance_hold(window, now))
    return found


def dependency_hold(roots: Mapping[str, Seen | None], own: Seen | None, *, now: float,
                    release_at: float | None, started_at: float | None = None, outage: bool = False) -> Hold:
    """Why a dependent's firing is held back from the direct sinks (the same verdicts as alerts.lifecycle.hold)."""
    failing = [name for name, seen in roots.items() if seen is not None and seen.failing]
    if failing:
        return Hold(None, f"depends on {_names(failing)}, which {'is' if len(failing) == 1 else 'are'} failing: "
                          f"not sent to {DIRECT} until {'it recovers' if len(failing) == 1 else 'they recover'} "
                          "(listed on its alert)")
    everyone = _names(list(roots))
    if outage:
        unseen = [name for name, seen in roots.items() if seen is None]
        if unseen:
            return Hold(None, f"depends on {_names(unseen)}, which failed and has not been seen since: not sent to "
                              f"{DIRECT} until it is seen passing and this check's next result still fails")
        return Hold(None, f"depends on {everyone}, which recovered: sent to {DIRECT} only if this check's next "
                          "result still fails (its own problem), otherwise dropped")
    decided = verdict(own, list(roots.values()), now=now, release_at=release_at, started_at=started_at)
    if decided is Verdict.SEND:
        return Hold(now, f"depends on {everyone}, which is fine again: sent to {DIRECT} within a second")
    if decided is Verdict.WAIT:
        unseen = [name for name, seen in roots.items() if seen is None
                  or (seen.at < own.changed if own is not None and own.failing
                      else started_at is not None and seen.seen_at < started_at)]
        return Hold(release_at, f"depends on {_names(unseen)}, not seen since this check began to fail: not sent to "
                                f"{DIRECT} until its next result, or once it has had the time to run")
    return Hold(None, f"depends on {everyone}, which recovered since: sent to {DIRECT} only if this check's next "
                      "result still fails (its own problem), otherwise dropped")


def maintenance_hold(window: Maintenance, now: float) -> Hold:
    """A maintenance window silences the alert's notifications until it ends."""
    named = f" ({window.reason})" if window.reason else ""
    return Hold(window_end(window, now), f"maintenance window{named}: notifications silenced until it ends")


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)
