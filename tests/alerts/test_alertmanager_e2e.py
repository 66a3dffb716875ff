"""End to end against a real Alertmanager: fire, resolve, survive an outage and a restart, dedupe replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from alerts import AlertEngine
from monitor.core.clock import SystemClock
from monitor.core.config import Config
from monitor.core.results import Result
from tests.alerts.factory import make_config, result
from tests.support.alertmanager import Alertmanager

pytestmark = pytest.mark.e2e

CHECK = "settings_get_unauth"


def config_for(am: Alertmanager, state_dir: Path) -> Config:
    return make_config(state_dir, sinks=[{"kind": "alertmanager", "url": am.url}],
                       alerts={"resend_interval": "2s"})


def engine(config: Config) -> AlertEngine:
    return AlertEngine(config, registry=prometheus_client.CollectorRegistry(), clock=SystemClock(),
                       backoff_base=0.05, backoff_cap=0.5)


def feed(e: AlertEngine, *results: Result) -> None:
    for r in results:
        e.observe(r)


async def until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll without blocking the event loop (the engine delivers on it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        last = await asyncio.to_thread(predicate)
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout} s; last value {last!r}")


def regression_alerts(am: Alertmanager) -> list[dict[str, Any]]:
    return am.alerts_named("ContractRegression")


SENTENCE = "expected 401|403, got 500"
BREAK = (result(CHECK, "ok", status=403), result(CHECK, "server_error", status=500, message=SENTENCE),
         result(CHECK, "server_error", status=500, confirmation=True, message=SENTENCE))
HEAL = (result(CHECK, "ok", status=403), result(CHECK, "ok", status=403, confirmation=True))


async def test_regression_fires_with_labels_and_resolves(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """403 -> 500 (+ confirmation): Alertmanager shows ContractRegression from=403 to=500; healing removes it."""
    e = engine(config_for(alertmanager, tmp_path / "state"))
    await e.start()
    try:
        feed(e, *BREAK)
        found = await until(lambda: regression_alerts(alertmanager))
        assert 1 == len(found)
        labels = found[0]["labels"]
        assert {"alertname": "ContractRegression", "check": CHECK, "kind": "auth_contract", "severity": "critical",
                "service": "pam-backend", "from": "403", "to": "500", "env": "test", "team": "core"} == labels
        assert "expected 401|403, got 500" == found[0]["annotations"]["summary"]
        assert [{"alertname": "ContractRegression", "state": "firing", "labels": labels,
                 "since": e.active_alerts()[0]["since"]}] == e.active_alerts()
        watchdog = await until(lambda: alertmanager.alerts_named("MonitorWatchdog"))
        assert "none" == watchdog[0]["labels"]["severity"]
        feed(e, *HEAL)
        await until(lambda: not regression_alerts(alertmanager))
        assert [] == e.active_alerts()
    finally:
        await e.aclose(2.0)


async def test_alert_raised_while_alertmanager_down_arrives_later(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """Alertmanager stopped while the alert fires: it is queued, retried, and shows up once it is back."""
    registry = prometheus_client.CollectorRegistry()
    e = AlertEngine(config_for(alertmanager, tmp_path / "state"), registry=registry, clock=SystemClock(),
                    backoff_base=0.05, backoff_cap=0.5)
    await e.start()
    try:
        alertmanager.stop()
        feed(e, *BREAK)
        await until(lambda: (registry.get_sample_value("pam_monitor_notifications_total",
                                                       {"sink": "alertmanager", "result": "retried"}) or 0) >= 2)
        assert 1.0 == registry.get_sample_value("pam_monitor_notification_queue_depth")
        alertmanager.start()
        found = await until(lambda: regression_alerts(alertmanager))
        assert ("403", "500") == (found[0]["labels"]["from"], found[0]["labels"]["to"])
        await until(lambda: registry.get_sample_value("pam_monitor_notification_queue_depth") == 0.0)
        assert 1.0 == registry.get_sample_value("pam_monitor_notifications_total",
                                                {"sink": "alertmanager", "result": "sent"})
    finally:
        await e.aclose(2.0)


async def test_two_replicas_make_one_alert(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """Two engines with the same config (own state dirs) firing the same regression: one alert, one watchdog."""
    a = engine(config_for(alertmanager, tmp_path / "a"))
    b = engine(config_for(alertmanager, tmp_path / "b"))
    await a.start()
    await b.start()
    try:
        feed(a, *BREAK)
        feed(b, *BREAK)
        await until(lambda: regression_alerts(alertmanager))
        await asyncio.sleep(2.5)  # past one resend from each replica
        assert 1 == len(regression_alerts(alertmanager))
        assert 1 == len(alertmanager.alerts_named("MonitorWatchdog"))
    finally:
        await a.aclose(1.0)
        await b.aclose(1.0)


async def test_restart_while_firing_then_heal_resolves(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """Engine stopped while firing, a new one on the same state_dir: no re-page, and healing resolves it."""
    registry = prometheus_client.CollectorRegistry()
    first = engine(config_for(alertmanager, tmp_path / "state"))
    await first.start()
    feed(first, *BREAK)
    await until(lambda: regression_alerts(alertmanager))
    await first.aclose(2.0)
    second = AlertEngine(config_for(alertmanager, tmp_path / "state"), registry=registry, clock=SystemClock())
    await second.start()
    try:
        assert ["firing"] == [a["state"] for a in second.active_alerts()]
        feed(second, result(CHECK, "server_error", status=500))  # still broken: no new page
        assert 0 == registry.get_sample_value("pam_monitor_notification_queue_depth")
        feed(second, *HEAL)
        await until(lambda: not regression_alerts(alertmanager))
    finally:
        await second.aclose(2.0)


async def test_check_removed_while_firing_is_resolved_on_start(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """The check left the config between runs: its alert is resolved in Alertmanager, not left to expire."""
    first = engine(config_for(alertmanager, tmp_path / "state"))
    await first.start()
    feed(first, *BREAK)
    await until(lambda: regression_alerts(alertmanager))
    await first.aclose(2.0)
    config = make_config(tmp_path / "state", sinks=[{"kind": "alertmanager", "url": alertmanager.url}],
                         checks=[{"name": "backend_health", "kind": "http", "target": "backend", "path": "/health"}])
    second = engine(config)
    await second.start()
    try:
        await until(lambda: not regression_alerts(alertmanager))
        assert [] == second.active_alerts()
    finally:
        await second.aclose(2.0)
