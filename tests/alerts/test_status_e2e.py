"""The real daemon (`pam-monitor run`) against a backend that refuses connections: /status `since` of EndpointDown is
the webhook's startsAt, the MonitorWatchdog is listed as /metrics counts it, and pam_monitor_alerts_firing has one
series per alertname."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from alerts.judge.rules import ALERTNAMES, RULES
from tests.support.alerting import Recorder
from tests.support.daemon import run_daemon
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.e2e


def test_status_since_is_the_webhook_startsat_and_the_watchdog_is_listed(tmp_path: Path) -> None:
    """EndpointDown fires on a refused port: its /status entry has since == the webhook's startsAt, state_since,
    no hold; MonitorWatchdog is listed firing with its labels while /metrics counts it; the firing family holds
    one series per alertname."""
    rec = Recorder()
    with serve_asgi(rec.app()) as hook:
        config = tmp_path / "pam-monitor.yaml"
        config.write_text(yaml.safe_dump({
            "service": "pam-backend", "state_dir": str(tmp_path / "state"),
            "defaults": {"interval": "1s", "timeout": "500ms"},
            "targets": {"backend": {"base_url": f"http://127.0.0.1:{free_port()}"}},
            "checks": [{"name": "backend_health", "kind": "http", "target": "backend", "path": "/health"}],
            "alerts": {"confirm_delay": "200ms", "external_labels": {"env": "e2e"},
                       "sinks": [{"kind": "webhook", "url": f"{hook}/hook"}]},
        }), encoding="utf-8")
        with run_daemon(config, free_port(), tmp_path) as daemon:
            body = daemon.wait_for(lambda: rec.bodies("/hook") and rec.bodies("/hook")[0], timeout=30,
                                   what="the webhook's firing")
            alerts = {a["alertname"]: a for a in daemon.status()["alerts"]}
            metrics = daemon.get("/metrics").text
    sent = body["alerts"][0]
    assert ("EndpointDown", "firing") == (sent["labels"]["alertname"], sent["status"])
    listed = alerts["EndpointDown"]
    assert (sent["startsAt"], sent["labels"], False, None, None) == (
        listed["since"], listed["labels"], listed["flapping"], listed["held_until"], listed["held_reason"])
    assert listed["since"] <= listed["state_since"]
    assert {"alertname": "MonitorWatchdog", "state": "firing",
            "labels": {"env": "e2e", "alertname": "MonitorWatchdog", "severity": "none", "service": "pam-backend"},
            "flapping": False, "held_until": None, "held_reason": None} \
        == {k: v for k, v in alerts["MonitorWatchdog"].items() if k not in ("since", "state_since")}
    firing = {(s.labels["alertname"], s.labels["severity"]): s.value
              for family in text_string_to_metric_families(metrics) if family.name == "pam_monitor_alerts_firing"
              for s in family.samples}
    assert {(name, RULES[name].severity) for name in ALERTNAMES} == set(firing)
    assert (1.0, 1.0) == (firing[("MonitorWatchdog", "none")], firing[("EndpointDown", "critical")])
