"""End to end: `pam-monitor run` against an https server on 127.0.0.1 whose certificate (made in the test) expires
in a few days, with a real Alertmanager: CertificateExpiring fires as a warning, turns critical, and resolves when
the certificate is renewed; /metrics and /status tell the same story."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.alertmanager import Alertmanager
from tests.support.certs import Authority, serve_tls, server_context
from tests.support.daemon import DaemonProcess, run_daemon
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e


def write_config(path: Path, url: str, ca_file: Path, am: Alertmanager, state_dir: Path) -> None:
    """One http check of the https server, trusting the test's CA; alerts to the real Alertmanager."""
    path.write_text(f"""
service: pam-backend
state_dir: {state_dir}
defaults: {{interval: 1s, timeout: 800ms, failure_threshold: 2, success_threshold: 2}}
targets:
  api: {{base_url: "{url}", ca_file: "{ca_file}"}}
checks:
  - {{name: api_health, kind: http, target: api, path: /health}}
alerts:
  resend_interval: 2s
  sinks:
    - {{kind: alertmanager, url: "{am.url}"}}
""", encoding="utf-8")


def cert_alerts(am: Alertmanager) -> list[tuple[str, str]]:
    """(check, severity) of every active CertificateExpiring in Alertmanager."""
    return sorted((a["labels"]["check"], a["labels"]["severity"]) for a in am.alerts_named("CertificateExpiring"))


def tls_samples(daemon: DaemonProcess) -> dict[str, Any]:
    """The check's TLS samples in /metrics, read with prometheus_client's parser."""
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(daemon.get("/metrics").text):
        for sample in family.samples:
            if sample.labels.get("check") == "api_health" and family.name.startswith(("probe_ssl", "probe_tls")):
                out[sample.name] = (sample.value, sample.labels.get("version"))
    return out


def test_an_expiring_certificate_warns_turns_critical_and_resolves_on_renewal(
        alertmanager: Alertmanager, tmp_path: Path) -> None:
    """5 days left: a warning in Alertmanager with the daemon's labels, the expiry in /metrics and the certificate
    in /status. Renewed to one expiring in 2 days: critical, the warning gone. Renewed for 90 days: resolved."""
    ca = Authority(tmp_path)
    soon, sooner, renewed = ca.issue(5), ca.issue(2), ca.issue(90)
    context = server_context(soon)
    config = tmp_path / "pam-monitor.yaml"
    with serve_tls(context) as url:
        write_config(config, url, ca.ca_file, alertmanager, tmp_path / "state")
        with run_daemon(config, free_port(), tmp_path) as daemon:
            daemon.wait_for(lambda: cert_alerts(alertmanager) == [("api_health", "warning")], timeout=30,
                            what="a CertificateExpiring warning in Alertmanager")
            [alert] = alertmanager.alerts_named("CertificateExpiring")
            assert {"check": "api_health", "kind": "http", "service": "pam-backend", "target": "api"}.items() <= (
                alert["labels"].items())
            assert "under alerts.cert_warning (14d)" in alert["annotations"]["summary"]
            assert {"probe_ssl_earliest_cert_expiry": (soon.earliest, None),
                    "probe_ssl_last_chain_expiry_timestamp_seconds": (soon.earliest, None),
                    "probe_tls_version_info": (1.0, "TLS 1.3")} == tls_samples(daemon)
            tls = daemon.check("api_health")["tls"]
            assert ("CN=api.pam.test,O=PAM Backend", "CN=pam-monitor test CA,O=pam-monitor tests", "TLS 1.3") == (
                tls["subject"], tls["issuer"], tls["version"])
            assert 4.9 < tls["days_left"] <= 5.0

            context.load_cert_chain(sooner.chain, sooner.key)
            daemon.wait_for(lambda: cert_alerts(alertmanager) == [("api_health", "critical")], timeout=30,
                            what="CertificateExpiring critical, and the warning resolved")
            assert (sooner.earliest, None) == tls_samples(daemon)["probe_ssl_earliest_cert_expiry"]
            assert 1.9 < daemon.check("api_health")["tls"]["days_left"] <= 2.0

            context.load_cert_chain(renewed.chain, renewed.key)
            daemon.wait_for(lambda: cert_alerts(alertmanager) == [], timeout=30,
                            what="CertificateExpiring resolved after the renewal")
            assert (renewed.earliest, None) == tls_samples(daemon)["probe_ssl_earliest_cert_expiry"]
