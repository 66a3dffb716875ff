"""A dashboard made for blackbox_exporter works on pam-monitor's /metrics for the names both have: the real daemon
probes an https and a plain http server, and /metrics, read with prometheus_client's parser, has every series,
label and label value such a dashboard's queries use, with blackbox_exporter's meaning; the names README says
pam-monitor does not have are indeed absent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from monitor.core.results import HTTP_PHASES
from tests.deploy.helpers import label_names, matcher_values, metric_names, run, tool
from tests.support.certs import Authority, serve_tls, server_context
from tests.support.daemon import run_daemon
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.e2e

DASHBOARD_QUERIES: tuple[str, ...] = (
    'probe_success{instance=~"$target"}',
    'avg_over_time(probe_success{instance=~"$target"}[1h])',
    'probe_duration_seconds{instance=~"$target"}',
    'probe_http_status_code{instance=~"$target"}',
    'probe_http_version{instance=~"$target"}',
    'probe_http_ssl{instance=~"$target"} == 1',
    'probe_http_content_length{instance=~"$target"}',
    'probe_dns_lookup_time_seconds{instance=~"$target"}',
    'sum by (phase) (probe_http_duration_seconds{instance=~"$target", '
    'phase=~"resolve|connect|tls|processing|transfer"})',
    '(probe_ssl_earliest_cert_expiry{instance=~"$target"} - time()) / 86400',
    'probe_ssl_last_chain_expiry_timestamp_seconds{instance=~"$target"} - time()',
    'max by (version) (probe_tls_version_info{instance=~"$target", version=~"TLS 1.2|TLS 1.3"})',
)
"""The panel queries of a blackbox_exporter HTTP dashboard (success, latency, status, versions, phases, DNS, TLS),
in the form such dashboards write them; `$target` is the dashboard's variable over `instance`."""

NOT_PROVIDED: frozenset[str] = frozenset({
    "probe_http_redirects", "probe_http_uncompressed_body_length", "probe_failed_due_to_regex",
    "probe_http_last_modified_timestamp_seconds", "probe_ip_protocol", "probe_ip_addr_hash",
    "probe_ssl_last_chain_info", "probe_tls_cipher_info",
})
"""blackbox_exporter's HTTP prober series pam-monitor does not have (README, blackbox_exporter parity)."""

PROMETHEUS_LABELS = frozenset({"instance", "job"})  # added by the scrape, not by the exporter


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def test_a_blackbox_dashboard_finds_its_series_labels_and_meanings(tmp_path: Path) -> None:
    """Every name a blackbox dashboard query reads is a gauge family in /metrics with samples for the https check;
    every exporter label it matches on exists with a value it asks for; the values mean what blackbox_exporter
    means (success 1, status 200, HTTP 1.1, over TLS 1/0, announced length, five phases, the certificate's
    expiry); the names pam-monitor does not have are absent; each query is valid PromQL."""
    ca = Authority(tmp_path)
    leaf = ca.issue(30)
    config = tmp_path / "pam-monitor.yaml"
    with serve_tls(server_context(leaf)) as https_url, serve_asgi(Starlette(routes=[Route("/", ok)])) as http_url:
        config.write_text(f"""
service: pam-backend
state_dir: {tmp_path / "state"}
defaults: {{interval: 1s, timeout: 800ms}}
targets:
  secure: {{base_url: "{https_url}", ca_file: "{ca.ca_file}"}}
  plain: {{base_url: "{http_url}"}}
checks:
  - {{name: secure_health, kind: http, target: secure, path: /}}
  - {{name: plain_health, kind: http, target: plain, path: /}}
""", encoding="utf-8")
        with run_daemon(config, free_port(), tmp_path) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="both checks to run")
            text = daemon.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples: dict[str, list[Sample]] = {}
    for family in families.values():
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)

    def of(name: str, check: str) -> list[Sample]:
        return [s for s in samples.get(name, []) if s.labels.get("check") == check]

    used = set()
    for query in DASHBOARD_QUERIES:
        for name in metric_names(query):
            used.add(name)
            assert "gauge" == families[name].type, name
            assert of(name, "secure_health"), f"{name} has no sample for the https check"
            exporter_labels = label_names(query) - PROMETHEUS_LABELS
            for label in exporter_labels:
                present = {s.labels.get(label) for s in samples[name]}
                assert present - {None}, f"{name} has no {label} label"
                wanted = matcher_values(query, label)
                assert not wanted or wanted & present, (query, present)
    assert set() == NOT_PROVIDED & set(samples)
    rules = [{"record": f"dashboard:query:n{i}", "expr": q.replace("$target", ".*")}
             for i, q in enumerate(DASHBOARD_QUERIES)]
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "blackbox", "rules": rules}]}))
    checked = run([tool("promtool"), "check", "rules", str(tmp_path / "queries.yml")])
    assert 0 == checked.returncode, checked.stdout + checked.stderr

    def value(name: str, check: str = "secure_health") -> float:
        [sample] = of(name, check)
        return sample.value

    assert (1.0, 200.0, 1.1, 2.0) == (value("probe_success"), value("probe_http_status_code"),
                                      value("probe_http_version"), value("probe_http_content_length"))
    assert (1.0, 0.0) == (value("probe_http_ssl"), value("probe_http_ssl", "plain_health"))
    assert (leaf.earliest, leaf.earliest) == (value("probe_ssl_earliest_cert_expiry"),
                                              value("probe_ssl_last_chain_expiry_timestamp_seconds"))
    assert 29.9 < (leaf.earliest - time.time()) / 86400 <= 30
    assert [] == of("probe_ssl_earliest_cert_expiry", "plain_health")
    assert [("TLS 1.3", 1.0)] == [(s.labels["version"], s.value) for s in of("probe_tls_version_info",
                                                                             "secure_health")]
    phases = {s.labels["phase"]: s.value for s in of("probe_http_duration_seconds", "secure_health")}
    assert set(HTTP_PHASES) == set(phases)
    assert phases["tls"] > 0.0
    assert 0.0 == {s.labels["phase"]: s.value for s in of("probe_http_duration_seconds", "plain_health")}["tls"]
    assert 0 <= value("probe_duration_seconds") < 1.0
    assert used >= {"probe_ssl_earliest_cert_expiry", "probe_tls_version_info", "probe_http_duration_seconds"}
