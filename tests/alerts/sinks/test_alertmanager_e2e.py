"""End to end against a real Alertmanager: fire, resolve, survive an outage and a restart, dedupe replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import pytest

from alerts import AlertEngine
from monitor.core.config import Config
from monitor.core.results import Result
from tests.support.alerting import make_config, make_engine, queue_depth, result, sent
from tests.support.alertmanager import Alertmanager
from tests.support.poll import until_async

pytestmark = pytest.mark.e2e

CHECK = "settings_get_unauth"


def config_for(am: Alertmanager, state_dir: Path) -> Config:
    return make_config(state_dir, sinks=[{"kind": "alertmanager", "url": am.url}],
                       alerts={"resend_interval": "2s"})


def engine(config: Config, registry: prometheus_client.CollectorRegistry | None = None, **options: Any) -> AlertEngine:
    """An engine with fast retries that gives queued notifications two seconds to go out when it stops."""
    return make_engine(config, registry, backoff_base=0.05, backoff_cap=0.5, flush_timeout=2.0, **options)


def feed(e: AlertEngine, *results: Result) -> None:
    """Observe the results in order."""
    for r in results:
        e.observe(r)


async def seen(predicate: Any, timeout: float = 20.0) -> Any:
    """Poll Alertmanager (blocking HTTP) from a thread, so the engine keeps delivering on the event loop."""
    return await until_async(predicate, timeout=timeout, interval=0.1, in_thread=True)


def regression_alerts(am: Alertmanager) -> list[dict[str, Any]]:
    """The active ContractRegression alerts in Alertmanager."""
    return am.alerts_named("ContractRegression")


SENTENCE = "expected 401|403, got 500"
BREAK = (result(CHECK, "ok", status=403), result(CHECK, "server_error", status=500, message=SENTENCE),
         result(CHECK, "server_error", status=500, confirmation=True, message=SENTENCE))
HEAL = (result(CHECK, "ok", status=403), result(CHECK, "ok", status=403, confirmation=True))


async def test_regression_fires_with_labels_and_resolves(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """403 -> 500 (+ confirmation): Alertmanager shows ContractRegression from=403 to=500; the engine lists it and the
    watchdog with the labels and startsAt Alertmanager holds (`since`); healing removes it, the watchdog stays."""
    async with engine(config_for(alertmanager, tmp_path / "state")) as e:
        feed(e, *BREAK)
        found = await seen(lambda: regression_alerts(alertmanager))
        assert 1 == len(found)
        labels = found[0]["labels"]
        assert {"alertname": "ContractRegression", "check": CHECK, "kind": "auth_contract", "severity": "critical",
                "service": "pam-backend", "target": "backend", "from": "403", "to": "500", "env": "test",
                "team": "core"} == labels
        assert "GET /api/v1/users/{user_id}/settings: expected 401|403, got 500" == found[0]["annotations"]["summary"]
        # The link to the check's row on the status page (no external_url: the daemon's listen address).
        assert f"http://127.0.0.1:9108/#check-{CHECK}" == found[0]["annotations"]["status_url"] == found[0][
            "generatorURL"]
        watchdog = await seen(lambda: alertmanager.alerts_named("MonitorWatchdog"))
        assert "none" == watchdog[0]["labels"]["severity"]
        listed = e.active_alerts()
        assert [{"alertname": "ContractRegression", "state": "firing", "labels": labels,
                 "since": found[0]["startsAt"], "state_since": listed[0]["state_since"], "flapping": False,
                 "held_until": None, "held_reason": None, "status_url": found[0]["annotations"]["status_url"]},
                {"alertname": "MonitorWatchdog", "state": "firing", "labels": watchdog[0]["labels"],
                 "since": watchdog[0]["startsAt"], "state_since": watchdog[0]["startsAt"], "flapping": False,
                 "held_until": None, "held_reason": None}] == listed
        feed(e, *HEAL)
        await seen(lambda: not regression_alerts(alertmanager))
        assert ["MonitorWatchdog"] == [a["alertname"] for a in e.active_alerts()]


async def test_alert_raised_while_alertmanager_down_arrives_later(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """Alertmanager stopped while the alert fires: it is queued, retried, and shows up once it is back."""
    registry = prometheus_client.CollectorRegistry()
    async with engine(config_for(alertmanager, tmp_path / "state"), registry) as e:
        alertmanager.stop()
        feed(e, *BREAK)
        await seen(lambda: sent(registry, "alertmanager", "retried") >= 2)
        assert 1.0 == queue_depth(registry)
        alertmanager.start()
        found = await seen(lambda: regression_alerts(alertmanager))
        assert ("403", "500") == (found[0]["labels"]["from"], found[0]["labels"]["to"])
        await seen(lambda: queue_depth(registry) == 0.0)
        assert 1.0 == sent(registry, "alertmanager")


async def test_two_replicas_make_one_alert(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """Two engines with the same config (own state dirs) firing the same regression, each having re-posted it
    since: one alert, one watchdog."""
    posts = {"a": 0, "b": 0}

    def counting(name: str) -> httpx.AsyncClient:
        async def count(request: httpx.Request) -> None:
            posts[name] += 1

        return httpx.AsyncClient(trust_env=False, event_hooks={"request": [count]})

    async with counting("a") as http_a, counting("b") as http_b, \
            engine(config_for(alertmanager, tmp_path / "a"), http=http_a) as a, \
            engine(config_for(alertmanager, tmp_path / "b"), http=http_b) as b:
        feed(a, *BREAK)
        feed(b, *BREAK)
        await seen(lambda: regression_alerts(alertmanager))
        await until_async(lambda: 0 == a.stats().queued == b.stats().queued)  # both delivered their firing
        before = dict(posts)
        await until_async(lambda: posts["a"] > before["a"] and posts["b"] > before["b"], timeout=20.0)  # and re-posted
        assert 1 == len(regression_alerts(alertmanager))
        assert 1 == len(alertmanager.alerts_named("MonitorWatchdog"))


async def test_restart_while_firing_then_heal_resolves(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """Engine stopped while firing, a new one on the same state_dir: no re-page, and healing resolves it."""
    registry = prometheus_client.CollectorRegistry()
    async with engine(config_for(alertmanager, tmp_path / "state")) as first:
        feed(first, *BREAK)
        await seen(lambda: regression_alerts(alertmanager))
    async with make_engine(config_for(alertmanager, tmp_path / "state"), registry, flush_timeout=2.0) as second:
        assert [("ContractRegression", "firing"), ("MonitorWatchdog", "firing")] == [
            (a["alertname"], a["state"]) for a in second.active_alerts()]
        feed(second, result(CHECK, "server_error", status=500))  # still broken: no new page
        assert 0 == queue_depth(registry)
        feed(second, *HEAL)
        await seen(lambda: not regression_alerts(alertmanager))


async def test_check_removed_while_firing_is_resolved_on_start(alertmanager: Alertmanager, tmp_path: Path) -> None:
    """The check left the config between runs: its alert is resolved in Alertmanager, not left to expire."""
    async with engine(config_for(alertmanager, tmp_path / "state")) as first:
        feed(first, *BREAK)
        await seen(lambda: regression_alerts(alertmanager))
    config = make_config(tmp_path / "state", sinks=[{"kind": "alertmanager", "url": alertmanager.url}],
                         checks=[{"name": "backend_health", "kind": "http", "target": "backend", "path": "/health"}])
    async with engine(config) as second:
        await seen(lambda: not regression_alerts(alertmanager))
        assert ["MonitorWatchdog"] == [a["alertname"] for a in second.active_alerts()]
