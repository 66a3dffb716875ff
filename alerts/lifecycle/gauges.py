"""The firing gauge and the watchdog: `pam_monitor_alerts_firing` per (alertname, severity), where the
MonitorWatchdog's series reads 1 while results keep arriving, and the watchdog notification re-posted with it.

One series per alertname exists from start-up, at its configured severity (`alerts.rules` may override it); a
series at another severity exists only while alerts count in it (one that fired before a reload changed the
severity keeps its labels until it resolves), so the family has one series per alertname on a quiet day."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import prometheus_client

from alerts.judge.rules import ALERTNAMES, severity_of, watchdog_labels
from alerts.lifecycle.machine import AlertState, Status
from alerts.model import WATCHDOG, Event, Notification
from monitor.core.clock import Clock
from monitor.core.config import Config

Series = tuple[str, str]
"""(alertname, severity): one series of pam_monitor_alerts_firing."""


def series_of(state: AlertState | None) -> Series | None:
    """The series a state counts in, or None when it is not firing."""
    if state is None or state.status is not Status.FIRING:
        return None
    return state.alertname, state.labels.get("severity", "none")


def watchdog_grace(config: Config) -> float | None:
    """How long without a result before the watchdog stops; None: no enabled check, always healthy."""
    intervals = [c.interval for c in config.checks if c.enabled]
    if not intervals:
        return None
    return max(3 * max(intervals), 3 * config.alerts.resend_interval)


class FiringGauge:
    """Keeps pam_monitor_alerts_firing equal to the firing alerts, series by series, plus the watchdog."""

    def __init__(self, config: Config, *, registry: prometheus_client.CollectorRegistry, clock: Clock,
                 problem: Callable[[], str | None] = lambda: None) -> None:
        self._clock = clock
        self._problem = problem  # what the watchdog's `alert_state` annotation says (None: state is being saved)
        self._gauge = prometheus_client.Gauge(
            "pam_monitor_alerts_firing", "Alerts currently firing, by alertname and severity.",
            ["alertname", "severity"], registry=registry,
        )
        self._counts: dict[Series, int] = {}
        self._configured: frozenset[Series] = frozenset()  # one per alertname, at its configured severity
        self._exists: set[Series] = set()  # the series the gauge holds now
        self._moved: set[Series] = set()
        self._watchdog: Series | None = None
        self._watchdog_up = False  # what the watchdog's series shows
        self._grace: float | None = None
        self._started_at = clock.time()
        self._last_result: float | None = None
        self.sets = 0
        """How many times a series was set (benchmarks count them: a healthy result sets none)."""
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Adopt a config: the configured series (created at 0, or removed when left at 0), the watchdog's grace
        and series."""
        self._config = config
        self._grace = watchdog_grace(config)
        old, old_configured = self._watchdog, self._configured
        self._configured = frozenset((name, severity_of(config, name)) for name in ALERTNAMES)
        self._watchdog = (WATCHDOG, watchdog_labels(config)["severity"]) if config.alerts.watchdog else None
        moved = set(old_configured ^ self._configured)
        if old is not None and old != self._watchdog:
            moved.add(old)
        for series in moved:
            self._show(series)

    def started(self, now: float) -> None:
        """The engine started: the watchdog's grace counts from now until the first result."""
        self._started_at = now

    def result_seen(self, now: float) -> None:
        """A result arrived: the watchdog is healthy again if it was not."""
        self._last_result = now
        if not self._watchdog_up and self._watchdog is not None:
            self._show(self._watchdog)

    def moved(self, before: AlertState | None, after: AlertState | None) -> None:
        """Count a state change; the series it touches are set by `publish()`."""
        old, new = series_of(before), series_of(after)
        if old == new:
            return
        for series, delta in ((old, -1), (new, 1)):
            if series is not None:
                self._counts[series] = self._counts.get(series, 0) + delta
                self._moved.add(series)

    def publish(self) -> None:
        """Set the series that moved since the last publish."""
        if not self._moved:
            return
        for series in self._moved:
            self._show(series)
        self._moved.clear()

    def recount(self, states: Iterable[AlertState]) -> None:
        """Count every firing series from the states again and set them all; re-check the watchdog."""
        counts: dict[Series, int] = {}
        for state in states:
            series = series_of(state)
            if series is not None:
                counts[series] = counts.get(series, 0) + 1
        shown = self._configured | self._exists | set(self._counts) | set(counts)
        if self._watchdog is not None:
            shown |= {self._watchdog}
        self._counts = counts
        self._moved.clear()
        for series in shown:
            self._show(series)

    def healthy(self, now: float) -> bool:
        """Results keep arriving: the watchdog is only sent while the runner is alive."""
        if self._grace is None:
            return True
        last = self._last_result if self._last_result is not None else self._started_at
        return now - last <= self._grace

    def watchdog(self, now: float) -> Notification | None:
        """The MonitorWatchdog notification, when the watchdog is on and healthy; while alert state is not being
        saved, its `alert_state` annotation says so."""
        if not self._config.alerts.watchdog or not self.healthy(now):
            return None
        annotations = {"summary": f"pam-monitor for {self._config.service} is running",
                       "runbook": "Route to a dead man's switch; silence means pam-monitor is down."}
        problem = self._problem()
        if problem is not None:
            annotations["alert_state"] = problem
        return Notification(
            key=WATCHDOG, event=Event.FIRING, labels=watchdog_labels(self._config), annotations=annotations,
            starts_at=self._started_at, at=now,
        )

    def _show(self, series: Series) -> None:
        """Set one series from the counts (plus the watchdog, if it is its series); remove it when it reads 0 and
        is not its alertname's configured series."""
        value = self._counts.get(series, 0)
        if series == self._watchdog:
            self._watchdog_up = self.healthy(self._clock.time())
            value += 1 if self._watchdog_up else 0
        if value == 0 and series not in self._configured:
            if series in self._exists:
                self._gauge.remove(*series)
                self._exists.discard(series)
            return
        self._gauge.labels(*series).set(value)
        self._exists.add(series)
        self.sets += 1
