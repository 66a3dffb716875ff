"""pam_monitor_alerts_firing holds one series per alertname, at its configured severity: an override in alerts.rules
moves it, a reload moves it, and an alert that fired under the old severity keeps its series until it resolves."""

from __future__ import annotations

from pathlib import Path

import prometheus_client

from alerts.judge.rules import ALERTNAMES, RULES
from tests.support.alerting import make_config, make_engine, result
from tests.support.clock import FakeClock

VOICE = "voice_health"


def series(registry: prometheus_client.CollectorRegistry) -> dict[tuple[str, str], float]:
    """Every pam_monitor_alerts_firing sample: (alertname, severity) -> value."""
    return {(s.labels["alertname"], s.labels["severity"]): s.value
            for metric in registry.collect() if metric.name == "pam_monitor_alerts_firing"
            for s in metric.samples}


def quiet_day(**severities: str) -> dict[tuple[str, str], float]:
    """What the family reads with nothing firing: one series per alertname at its (overridden) severity; the
    watchdog's reads 1."""
    return {(name, severities.get(name, RULES[name].severity)): 1.0 if name == "MonitorWatchdog" else 0.0
            for name in ALERTNAMES}


async def test_one_series_per_alertname_at_its_default_severity(tmp_path: Path) -> None:
    """No override: exactly one series per alertname, e.g. MonitorWatchdog{severity="none"} and no
    MonitorWatchdog{severity="critical"}."""
    registry = prometheus_client.CollectorRegistry()
    async with make_engine(make_config(tmp_path), registry, FakeClock()):
        assert quiet_day() == series(registry)
        assert len(ALERTNAMES) == len(series(registry))


async def test_an_override_moves_the_series(tmp_path: Path) -> None:
    """VoiceDegraded raised to critical and the watchdog to info: their series carry those severities, and no
    series is left at the default."""
    registry = prometheus_client.CollectorRegistry()
    rules = {"VoiceDegraded": {"severity": "critical"}, "MonitorWatchdog": {"severity": "info"}}
    async with make_engine(make_config(tmp_path, alerts={"rules": rules}), registry, FakeClock()):
        assert quiet_day(VoiceDegraded="critical", MonitorWatchdog="info") == series(registry)


async def test_a_reload_moves_the_series_and_a_firing_alert_keeps_its_own(tmp_path: Path) -> None:
    """VoiceDegraded fires at warning; a reload makes it critical: the warning series stays at 1 beside the new
    critical one at 0 while the alert fires (it keeps the labels it fired with); once it resolves the warning
    series is gone and the family is back to one series per alertname."""
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(make_config(tmp_path), registry, clock) as e:
        for _ in range(2):
            e.observe(result(VOICE, "slow", status=200, at=clock.now))
        assert 1.0 == series(registry)[("VoiceDegraded", "warning")]
        await e.reload(make_config(tmp_path, alerts={"rules": {"VoiceDegraded": {"severity": "critical"}}}))
        assert {**quiet_day(VoiceDegraded="critical"), ("VoiceDegraded", "warning"): 1.0} == series(registry)
        for _ in range(2):
            e.observe(result(VOICE, "ok", status=200, at=clock.now))
        assert quiet_day(VoiceDegraded="critical") == series(registry)
        await e.reload(make_config(tmp_path))
        assert quiet_day() == series(registry)
