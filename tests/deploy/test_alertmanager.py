"""deploy/alertmanager: amtool accepts the config, routes each severity where it belongs, secrets stay in files,
and a real Alertmanager running this routing inhibits the way the comments promise."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.core.durations import parse_duration
from tests.deploy.helpers import DEPLOY, run, tool
from tests.support.alertmanager import Alertmanager
from tests.support.poll import until

AM_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
HEARTBEAT_MAX_S = 300.0
"""A dead man's switch is only as quick as its heartbeat: past a few minutes a dead monitor goes unnoticed."""


@pytest.mark.process
def test_amtool_check_config_passes() -> None:
    """amtool accepts alertmanager.yml."""
    result = run([tool("amtool"), "check-config", str(AM_CONFIG)])
    assert 0 == result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=MonitorWatchdog", "severity=none", "service=pam-backend"], "deadmans-switch"),
        (["alertname=TableMissing", "severity=critical", "service=pam-backend", "check=db"], "pagerduty-critical"),
        (["alertname=SchemaDrift", "severity=warning", "service=pam-backend", "check=db"], "slack-warnings"),
    ],
)
@pytest.mark.process
def test_amtool_routes_alerts_by_severity_and_watchdog(labels: list[str], receiver: str) -> None:
    """Critical goes to PagerDuty, warning to Slack, the watchdog to the dead man's switch."""
    result = run([tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels])
    assert 0 == result.returncode, result.stdout + result.stderr
    assert receiver == result.stdout.strip()


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_watchdog_heartbeat_is_frequent_and_secrets_are_file_references() -> None:
    """The heartbeat repeats within a few minutes; no receiver holds a secret inline, each uses a *_file path."""
    config = yaml.safe_load(AM_CONFIG.read_text())
    watchdog = next(r for r in config["route"]["routes"] if r["receiver"] == "deadmans-switch")
    assert parse_duration(watchdog["repeat_interval"]) <= HEARTBEAT_MAX_S
    inline = {"routing_key", "service_key", "api_url", "api_key", "password", "credentials", "bearer_token"}
    keys = [key for key, _ in _walk(config["receivers"])]
    assert [] == [k for k in keys if k in inline]
    assert [] == [k for k, v in _walk(config["receivers"]) if k.endswith("_file") and not str(v).startswith("/")]
    assert any(k.endswith("_file") for k in keys)


def _quiet_receivers(config: dict[str, Any]) -> dict[str, Any]:
    """The same routes and inhibitions with receivers that send nothing (no traffic leaves 127.0.0.1)."""
    return {**config, "receivers": [{"name": r["name"]} for r in config["receivers"]]}


def _alert(alertname: str, service: str = "pam-backend", check: str = "db_roundtrip", **extra: str) -> dict[str, Any]:
    return {"labels": {"alertname": alertname, "severity": "critical", "service": service, "check": check, **extra}}


def _states_after_inhibition(tmp_path: Path, alerts: list[dict[str, Any]], settled: int) -> dict[tuple[str, ...], str]:
    """Post alerts to a real Alertmanager running deploy's routing; return (alertname, service, check) -> state.

    Polls until `settled` alerts are suppressed, since inhibition is evaluated asynchronously; if that never
    happens the last states seen are returned and the caller's comparison shows them.
    """
    tool("prometheus-alertmanager")
    quiet = yaml.safe_dump(_quiet_receivers(yaml.safe_load(AM_CONFIG.read_text())))
    am = Alertmanager(tmp_path / "alertmanager", config=quiet)
    am.start()
    try:
        assert 200 == httpx.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=5).status_code
        states: dict[tuple[str, ...], str] = {}

        def settled_states() -> bool:
            states.clear()
            states.update({
                (a["labels"]["alertname"], a["labels"]["service"], a["labels"].get("check", "")): a["status"]["state"]
                for a in am.alerts()
            })
            return len(states) == len(alerts) and list(states.values()).count("suppressed") >= settled

        with contextlib.suppress(AssertionError):  # the caller's comparison reports what was seen instead
            until(settled_states, timeout=10, what=f"{settled} suppressed alerts")
        return states
    finally:
        am.stop()


@pytest.mark.e2e
def test_real_alertmanager_inhibits_table_missing_while_database_is_down(tmp_path: Path) -> None:
    """A real Alertmanager with this routing: DatabaseDown suppresses TableMissing of the same service only."""
    alerts = [
        _alert("DatabaseDown", kind="db"),
        _alert("TableMissing", kind="db", table="user_settings"),
        _alert("TableMissing", service="other-backend", kind="db", table="user_settings"),
    ]
    assert {
        ("DatabaseDown", "pam-backend", "db_roundtrip"): "active",
        ("TableMissing", "pam-backend", "db_roundtrip"): "suppressed",
        ("TableMissing", "other-backend", "db_roundtrip"): "active",
    } == _states_after_inhibition(tmp_path, alerts, settled=1)


@pytest.mark.e2e
def test_real_alertmanager_pages_once_per_symptom_on_a_check(tmp_path: Path) -> None:
    """TableMissing hides ContractRegression/EndpointDown of the same check; ContractRegression hides EndpointDown."""
    alerts = [
        _alert("TableMissing", check="settings_get", kind="http", table="user_settings"),
        _alert("ContractRegression", check="settings_get", kind="http", **{"from": "200", "to": "500"}),
        _alert("EndpointDown", check="settings_get", kind="http"),
        _alert("ContractRegression", check="health", kind="http", **{"from": "200", "to": "503"}),
        _alert("EndpointDown", check="health", kind="http"),
        _alert("EndpointDown", check="voice", kind="voice"),
    ]
    assert {
        ("TableMissing", "pam-backend", "settings_get"): "active",
        ("ContractRegression", "pam-backend", "settings_get"): "suppressed",
        ("EndpointDown", "pam-backend", "settings_get"): "suppressed",
        ("ContractRegression", "pam-backend", "health"): "active",
        ("EndpointDown", "pam-backend", "health"): "suppressed",
        ("EndpointDown", "pam-backend", "voice"): "active",
    } == _states_after_inhibition(tmp_path, alerts, settled=3)


@pytest.mark.e2e
def test_real_alertmanager_inhibits_dependents_while_their_root_is_down(tmp_path: Path) -> None:
    """The root's EndpointDown (no depends_on) mutes alerts labelled depends_on on the same service and target;
    a dependent on another target, or on a root that is only CheckFailed, stays active."""
    root = {"target": "backend", "kind": "http"}
    dependent = {"target": "backend", "depends_on": "backend_health"}
    alerts = [
        _alert("EndpointDown", check="backend_health", **root),
        _alert("EndpointDown", check="settings_get_unauth", kind="auth_contract", **dependent),
        _alert("CheckFailed", check="settings_put_unauth", kind="auth_contract", **dependent),
        _alert("EndpointDown", check="rest_tables", kind="postgrest", target="supabase", depends_on="rest_health"),
        _alert("CheckFailed", check="rest_health", kind="http", target="supabase"),
    ]
    assert {
        ("EndpointDown", "pam-backend", "backend_health"): "active",
        ("EndpointDown", "pam-backend", "settings_get_unauth"): "suppressed",
        ("CheckFailed", "pam-backend", "settings_put_unauth"): "suppressed",
        ("EndpointDown", "pam-backend", "rest_tables"): "active",
        ("CheckFailed", "pam-backend", "rest_health"): "active",
    } == _states_after_inhibition(tmp_path, alerts, settled=2)


@pytest.mark.e2e
def test_real_alertmanager_inhibits_a_blocked_targets_alerts(tmp_path: Path) -> None:
    """MonitorBlocked (a target-level alert: no check label) mutes every other alert on the same service and
    target, whatever its alertname; another target's alerts stay active, and it does not mute itself."""
    blocked = {"labels": {"alertname": "MonitorBlocked", "severity": "critical", "service": "pam-backend",
                          "target": "backend"}}
    alerts = [
        blocked,
        _alert("CheckFailed", check="settings_get_unauth", kind="auth_contract", target="backend"),
        _alert("EndpointDown", check="backend_health", kind="http", target="backend"),
        _alert("EndpointDown", check="rest_health", kind="http", target="supabase"),
    ]
    assert {
        ("MonitorBlocked", "pam-backend", ""): "active",
        ("CheckFailed", "pam-backend", "settings_get_unauth"): "suppressed",
        ("EndpointDown", "pam-backend", "backend_health"): "suppressed",
        ("EndpointDown", "pam-backend", "rest_health"): "active",
    } == _states_after_inhibition(tmp_path, alerts, settled=2)
