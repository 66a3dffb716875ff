"""MonitorSaturated: fires after two evaluations with skipped runs, resolves after a quiet minute, reaches every sink
with daemon-level labels, survives a restart, and can be switched off."""

from __future__ import annotations

from pathlib import Path

import prometheus_client

from alerts.judge.saturated import EVERY, QUIET_EVALUATIONS
from tests.support.alerting import Recorder, make_config, make_engine, target_alerts
from tests.support.clock import FakeClock
from tests.support.poll import until_async
from tests.support.servers import serve_asgi


def _firing(registry: prometheus_client.CollectorRegistry) -> float | None:
    return registry.get_sample_value("pam_monitor_alerts_firing",
                                     {"alertname": "MonitorSaturated", "severity": "warning"})


async def test_fires_on_the_second_evaluation_with_skips_and_resolves_after_a_quiet_minute(tmp_path: Path) -> None:
    """Skips in one evaluation make it pending, skips in the next fire it; it stays firing through quiet
    evaluations until QUIET_EVALUATIONS of them in a row (a minute at 5 s) resolve it."""
    registry = prometheus_client.CollectorRegistry()
    clock = FakeClock()
    async with make_engine(make_config(tmp_path), registry, clock) as engine:
        engine.saturation(0)
        assert [] == target_alerts(engine)
        clock.advance(EVERY)
        engine.saturation(40)
        assert [("MonitorSaturated", "pending")] == [(a["alertname"], a["state"]) for a in target_alerts(engine)]
        clock.advance(EVERY)
        engine.saturation(90)
        assert [("MonitorSaturated", "firing")] == [(a["alertname"], a["state"]) for a in target_alerts(engine)]
        assert 1.0 == _firing(registry)
        for _ in range(QUIET_EVALUATIONS - 1):
            clock.advance(EVERY)
            engine.saturation(90)
        assert 1.0 == _firing(registry)
        clock.advance(EVERY)
        engine.saturation(90)
        assert [] == target_alerts(engine)
        assert 0.0 == _firing(registry)


async def test_one_evaluation_with_skips_does_not_fire(tmp_path: Path) -> None:
    """A single blip of skipped runs leaves it pending, then inactive again: no notification."""
    clock = FakeClock()
    async with make_engine(make_config(tmp_path), prometheus_client.CollectorRegistry(), clock) as engine:
        engine.saturation(3)
        clock.advance(EVERY)
        engine.saturation(3)
        assert [] == target_alerts(engine)
        assert 0 == engine.stats().queued


async def test_goes_to_every_sink_with_daemon_labels_and_the_count(tmp_path: Path) -> None:
    """Firing, it reaches Slack, PagerDuty and the webhook (unlike the watchdog) with alertname, severity, service
    and the external labels, no check label, and the number of runs skipped in the summary."""
    recorder = Recorder()
    clock = FakeClock()
    with serve_asgi(recorder.app()) as url:
        sinks = [{"kind": "webhook", "url": f"{url}/hook"}, {"kind": "slack", "url": f"{url}/slack"},
                 {"kind": "pagerduty", "routing_key": "k" * 32, "url": f"{url}/v2/enqueue"}]
        async with make_engine(make_config(tmp_path, sinks=sinks), prometheus_client.CollectorRegistry(),
                               clock) as engine:
            engine.saturation(7)
            clock.advance(EVERY)
            engine.saturation(19)
            await until_async(lambda: len(recorder.paths()) >= 3, what="three deliveries")
    assert ["/hook", "/slack", "/v2/enqueue"] == sorted(recorder.paths())
    hook = recorder.bodies("/hook")[0]
    alert = hook["alerts"][0]
    assert {"alertname": "MonitorSaturated", "severity": "warning", "service": "pam-backend", "env": "test"} == (
        alert["labels"])
    assert alert["annotations"]["summary"].startswith("pam-monitor skipped 12 runs in the last 5 s")
    assert "MonitorSaturated" in str(recorder.bodies("/slack")[0])
    assert "MonitorSaturated" in str(recorder.bodies("/v2/enqueue")[0])


async def test_state_survives_a_restart_and_a_reload(tmp_path: Path) -> None:
    """Firing state is persisted: after a restart it is still firing (no second page), and a reload keeps it
    although it belongs to no check."""
    clock = FakeClock()
    config = make_config(tmp_path)
    async with make_engine(config, prometheus_client.CollectorRegistry(), clock) as engine:
        engine.saturation(5)
        clock.advance(EVERY)
        engine.saturation(10)
    registry = prometheus_client.CollectorRegistry()
    async with make_engine(config, registry, clock) as engine:
        assert ["firing"] == [a["state"] for a in target_alerts(engine)]
        await engine.reload(config)
        assert ["firing"] == [a["state"] for a in target_alerts(engine)]
        assert 1.0 == _firing(registry)
        assert 0 == engine.stats().queued


async def test_disabled_rule_never_fires_and_a_reload_that_disables_it_resolves_it(tmp_path: Path) -> None:
    """alerts.rules.MonitorSaturated.enabled false: skips raise nothing; disabling it while it fires drops it."""
    clock = FakeClock()
    off = make_config(tmp_path, alerts={"rules": {"MonitorSaturated": {"enabled": False}}})
    async with make_engine(off, prometheus_client.CollectorRegistry(), clock) as engine:
        for total in (5, 10, 15):
            clock.advance(EVERY)
            engine.saturation(total)
        assert [] == target_alerts(engine)
    on = make_config(tmp_path / "on")
    async with make_engine(on, prometheus_client.CollectorRegistry(), clock) as engine:
        engine.saturation(5)
        clock.advance(EVERY)
        engine.saturation(10)
        assert 1 == len(target_alerts(engine))
        await engine.reload(make_config(tmp_path / "on", alerts={"rules": {"MonitorSaturated": {"enabled": False}}}))
        assert [] == target_alerts(engine)
