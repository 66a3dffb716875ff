"""Every file in deploy/ is valid for the tool that reads it and agrees with DESIGN.md and the config schema."""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from alerts import NOTIFICATION_RESULTS
from alerts.rules import ALERTNAMES, SEVERITIES
from monitor.core.config import CHECK_KINDS, load_config
from monitor.core.results import Outcome
from monitor.metrics import SKIP_REASONS
from tests.support.servers import free_port, serve_asgi

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTALL_HINT = "apt-get install -y prometheus prometheus-alertmanager"

# DESIGN §6, exactly. Histograms also expose _bucket/_sum/_count.
DESIGN_METRICS = frozenset({
    "probe_success",
    "probe_duration_seconds",
    "probe_http_status_code",
    "pam_monitor_check_duration_seconds",
    "pam_monitor_check_results_total",
    "pam_monitor_check_outcome",
    "pam_monitor_status_transitions_total",
    "pam_monitor_check_last_run_timestamp_seconds",
    "pam_monitor_db_table_present",
    "pam_monitor_db_phase_duration_seconds",
    "pam_monitor_alerts_firing",
    "pam_monitor_notifications_total",
    "pam_monitor_notification_queue_depth",
    "pam_monitor_scheduler_lateness_seconds",
    "pam_monitor_scheduler_skipped_runs_total",
    "pam_monitor_config_last_reload_successful",
    "pam_monitor_build_info",
})
HISTOGRAMS = ("pam_monitor_check_duration_seconds", "pam_monitor_scheduler_lateness_seconds")
SERIES_NAMES = DESIGN_METRICS | {f"{h}{s}" for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
# Labels the daemon puts on its series, plus what Prometheus adds (job, instance, the `service` target label).
KNOWN_LABELS = frozenset({
    "check", "kind", "outcome", "from", "to", "table", "phase", "alertname", "severity", "sink", "result",
    "reason", "version", "le", "job", "instance", "service",
})
DESIGN_ALERTS = frozenset({
    "ContractRegression", "AuthBypass", "TableMissing", "SchemaDrift", "EndpointDown", "VoiceDegraded",
    "DatabaseDown", "MonitorWatchdog",
})


# ---------------------------------------------------------------------------------------------- helpers


def load_as_deployed(
    path: Path, listen: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Load a config the way the deployed process would: `env` is its whole environment.

    PAM_MONITOR_* overrides are read from the process environment (pydantic-settings), so they are set
    there for the duration of the test; `${VAR}` references are looked up in `env`.
    """
    for name in [n for n in os.environ if n.startswith("PAM_MONITOR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("PAM_MONITOR_"):
            monkeypatch.setenv(name, value)
    return load_config(path, listen=listen, environ=env)


def tool(name: str) -> str:
    """Path of a required binary; the test fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run `{INSTALL_HINT}` (and `apt-get install -y systemd` "
                    "for systemd-analyze)")
    return path


def run(cmd: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded) and capture its output."""
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\")")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that name our series or a recording rule (they contain ':')."""
    text = _GROUPING.sub(" ", _MATCHERS.sub(" ", _RANGE.sub(" ", _STRING.sub(" ", expr))))
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    return {
        name for name in _IDENT.findall(text)
        if ":" in name or name.startswith(("probe_", "pam_monitor_"))
    }


def label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/on/without/ignoring clauses."""
    names = {m.group(1) for block in _MATCHERS.findall(expr) for m in _MATCHER.finditer(block)}
    for group in _GROUPING.findall(expr):
        names |= {part.strip() for part in group.split(",") if part.strip()}
    return names


def matcher_values(expr: str, label: str) -> set[str]:
    """Values a matcher on `label` names (a regex alternation split into its alternatives)."""
    values: set[str] = set()
    for block in _MATCHERS.findall(expr):
        for m in _MATCHER.finditer(block):
            if m.group(1) == label:
                values |= set(json.loads(m.group(3)).split("|"))
    return values


def test_metric_name_parser_sees_names_and_ignores_strings_and_labels() -> None:
    """The regex-based extractor finds series and recorded names, not label values, ranges or variables."""
    expr = ('histogram_quantile(0.99, sum by (check, le) (rate(pam_monitor_check_duration_seconds_bucket'
            '{job=~"$job", check="probe_fake"}[$__rate_interval]))) > on (check) job:probe_success:avg5m')
    assert {"pam_monitor_check_duration_seconds_bucket", "job:probe_success:avg5m"} == metric_names(expr)
    assert {"check", "le", "job"} == label_names(expr)
    assert {"a", "b"} == matcher_values('x{outcome=~"a|b", kind="http"}', "outcome")


# ---------------------------------------------------------------------------------------------- Prometheus


def rules() -> list[dict[str, Any]]:
    """Every rule in rules.yml."""
    doc = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    """Names of the recording rules in rules.yml."""
    return {r["record"] for r in rules() if "record" in r}


def test_promtool_check_rules_passes() -> None:
    """promtool accepts rules.yml (syntax, PromQL, templates, no duplicate rules)."""
    result = run([tool("promtool"), "check", "rules", "deploy/prometheus/rules.yml"])
    assert 0 == result.returncode, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    """Every alert fires on the series that should trip it and not on the near misses (rules_test.yml)."""
    result = run([tool("promtool"), "test", "rules", "rules_test.yml"], cwd=DEPLOY / "prometheus")
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alerting_rule_has_a_unit_test_that_expects_it_to_fire() -> None:
    """No alert in rules.yml goes untested: each appears in rules_test.yml with a non-empty exp_alerts."""
    doc = yaml.safe_load((DEPLOY / "prometheus" / "rules_test.yml").read_text())
    tested = {
        case["alertname"]
        for group in doc["tests"]
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert set() == alerts - tested


def test_rules_mirror_design_alerts_with_bounded_static_labels() -> None:
    """Every DESIGN §4 alertname has a rule; severities are from the fixed set; no label is templated."""
    alerting = [r for r in rules() if "alert" in r]
    assert DESIGN_ALERTS == set(ALERTNAMES)
    assert set() == DESIGN_ALERTS - {r["alert"] for r in alerting}
    for rule in alerting:
        labels = rule.get("labels", {})
        assert labels.get("severity") in set(SEVERITIES), rule["alert"]
        templated = {k: v for k, v in labels.items() if "{{" in str(v) or "$" in str(v)}
        assert {} == templated, rule["alert"]


def test_rules_use_only_design_metric_names_labels_and_values() -> None:
    """Rule expressions name only DESIGN §6 series or recorded ones, known labels, real outcomes and kinds."""
    recorded = recorded_names()
    used: set[str] = set()
    for rule in rules():
        expr = rule["expr"]
        names = metric_names(expr)
        used |= names
        assert set() == names - SERIES_NAMES - recorded, expr
        assert set() == label_names(expr) - KNOWN_LABELS, expr
        assert set() == matcher_values(expr, "outcome") - {o.value for o in Outcome}, expr
        assert set() == matcher_values(expr, "kind") - set(CHECK_KINDS), expr
        assert set() == matcher_values(expr, "reason") - set(SKIP_REASONS), expr
        assert set() == matcher_values(expr, "result") - set(NOTIFICATION_RESULTS), expr
        for text in rule.get("annotations", {}).values():
            assert set() == set(re.findall(r"\$labels\.(\w+)", text)) - KNOWN_LABELS, text
    assert "probe_success" in used


def test_recording_rules_follow_level_metric_operation_naming() -> None:
    """Recorded names read level:metric:operation and the metric part is one of ours."""
    for name in recorded_names():
        level, metric, operation = name.split(":")
        assert level, name
        assert operation, name
        assert metric.removesuffix("_total") in {n.removesuffix("_total") for n in DESIGN_METRICS}, name


def test_promtool_check_config_passes_and_scrapes_the_job_the_rules_expect() -> None:
    """prometheus.yml is valid, loads rules.yml, and names the job `pam-monitor` that PamMonitorDown watches."""
    result = run([tool("promtool"), "check", "config", "deploy/prometheus/prometheus.yml"])
    assert 0 == result.returncode, result.stdout + result.stderr
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert ["rules.yml"] == config["rule_files"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "pam-monitor" in jobs
    assert ["127.0.0.1:9108"] == jobs["pam-monitor"]["static_configs"][0]["targets"]
    down = next(r for r in rules() if r.get("alert") == "PamMonitorDown")
    assert 'up{job="pam-monitor"}' in down["expr"]


# ---------------------------------------------------------------------------------------------- Alertmanager

AM_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"


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
def test_amtool_routes_alerts_by_severity_and_watchdog(labels: list[str], receiver: str) -> None:
    """Critical goes to PagerDuty, warning to Slack, the watchdog to the dead man's switch."""
    result = run([tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels])
    assert 0 == result.returncode, result.stdout + result.stderr
    assert receiver == result.stdout.strip()


def test_watchdog_route_repeats_every_minute_and_secrets_are_file_references() -> None:
    """The heartbeat repeats every 1m; no receiver holds a secret inline, only *_file paths."""
    config = yaml.safe_load(AM_CONFIG.read_text())
    watchdog = next(r for r in config["route"]["routes"] if r["receiver"] == "deadmans-switch")
    assert "1m" == watchdog["repeat_interval"]
    inline = {"routing_key", "service_key", "api_url", "api_key", "password", "credentials", "bearer_token"}

    def walk(node: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield key, value
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    keys = [key for key, _ in walk(config["receivers"])]
    assert [] == [k for k in keys if k in inline]
    assert {"routing_key_file", "api_url_file", "credentials_file"} <= set(keys)


def _quiet_receivers(config: dict[str, Any]) -> dict[str, Any]:
    """The same routes and inhibitions with receivers that send nothing (no traffic leaves 127.0.0.1)."""
    return {**config, "receivers": [{"name": r["name"]} for r in config["receivers"]]}


def _alert(alertname: str, service: str = "pam-backend", check: str = "db_roundtrip", **extra: str) -> dict[str, Any]:
    return {"labels": {"alertname": alertname, "severity": "critical", "service": service, "check": check, **extra}}


def _states_after_inhibition(tmp_path: Path, alerts: list[dict[str, Any]], settled: int) -> dict[tuple[str, ...], str]:
    """Post alerts to a real Alertmanager running deploy's routing; return (alertname, service, check) -> state.

    Waits until `settled` alerts are suppressed (or a bounded 10 s), since inhibition is evaluated asynchronously.
    """
    binary = tool("prometheus-alertmanager")
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(_quiet_receivers(yaml.safe_load(AM_CONFIG.read_text()))))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [binary, f"--config.file={config_file}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            for _ in range(200):
                try:
                    if client.get("/-/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.05)
            assert 200 == client.post("/api/v2/alerts", json=alerts).status_code
            states: dict[tuple[str, ...], str] = {}
            for _ in range(200):
                body = client.get("/api/v2/alerts").json()
                states = {
                    (a["labels"]["alertname"], a["labels"]["service"], a["labels"]["check"]): a["status"]["state"]
                    for a in body
                }
                if len(states) == len(alerts) and list(states.values()).count("suppressed") >= settled:
                    break
                time.sleep(0.05)
        return states
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


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


# ---------------------------------------------------------------------------------------------- Grafana

DASHBOARD = DEPLOY / "grafana" / "pam-monitor.json"


def dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of every panel."""
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_dashboard_has_variables_unique_ids_and_no_overlapping_panels() -> None:
    """Templating offers datasource, job, service, instance and check; ids are unique; panels do not overlap."""
    dash = dashboard()
    assert "pam-monitor" == dash["uid"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"datasource", "job", "service", "instance", "check"} == set(variables)
    assert "label_values(" in variables["check"]["query"]["query"]
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert sorted(set(ids)) == sorted(ids)
    boxes = [(p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"], p["gridPos"]["h"], p["title"]) for p in panels]
    overlaps = [
        (a[4], b[4]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
        if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
    ]
    assert [] == overlaps
    assert all(b[0] + b[2] <= 24 for b in boxes)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert "${datasource}" == panel["datasource"]["uid"], panel["title"]


def test_dashboard_queries_use_design_metrics_and_cover_all_of_them() -> None:
    """Every query names only DESIGN §6 series (or recorded rules) and every DESIGN metric has a panel."""
    recorded = recorded_names()
    used: set[str] = set()
    for expr in dashboard_exprs():
        names = metric_names(expr)
        assert set() == names - SERIES_NAMES - recorded, expr
        assert set() == label_names(expr) - KNOWN_LABELS, expr
        assert 'job=~"$job"' in expr, expr
        used |= {n.removesuffix("_bucket") for n in names}
    assert set() == DESIGN_METRICS - used
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert set() == metric_names(variable["query"]["query"]) - SERIES_NAMES, variable["name"]


def test_dashboard_per_check_queries_filter_by_the_check_variable() -> None:
    """Panels over per-check series honour the `check` variable."""
    per_check = DESIGN_METRICS - {
        "pam_monitor_alerts_firing", "pam_monitor_notifications_total", "pam_monitor_notification_queue_depth",
        "pam_monitor_scheduler_lateness_seconds", "pam_monitor_scheduler_skipped_runs_total",
        "pam_monitor_config_last_reload_successful", "pam_monitor_build_info",
    }
    for expr in dashboard_exprs():
        if {n.removesuffix("_bucket") for n in metric_names(expr)} & per_check:
            assert 'check=~"$check"' in expr, expr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """With Grafana variables filled in, promtool parses every panel query (as a recording rule)."""
    substitutions = {"$__rate_interval": "2m", "${datasource}": "x"}
    recs = []
    for i, expr in enumerate(dashboard_exprs()):
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        expr = re.sub(r"\$\w+", ".*", expr)
        recs.append({"record": f"dashboard:query:n{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recs}]}))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert 0 == result.returncode, result.stdout + result.stderr
    assert f"SUCCESS: {len(recs)} rules found" in result.stdout


# ---------------------------------------------------------------------------------------------- Kubernetes


def k8s_docs() -> list[dict[str, Any]]:
    """Documents of sidecar.yaml."""
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "sidecar.yaml").read_text()) if d]


def by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one document of this kind (and name) in sidecar.yaml."""
    found = [d for d in k8s_docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert 1 == len(found), (kind, name)
    return found[0]


def monitor_container() -> dict[str, Any]:
    """The pam-monitor container of the Deployment."""
    spec = by_kind("Deployment")["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "pam-monitor")


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity in MiB."""
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", quantity)
    assert match is not None, quantity
    return float(match.group(1)) * units.get(match.group(2) or "", 1 / 2**20)


def sidecar_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ConfigMap's config.yaml loaded by the real loader with the container's env and args."""
    container = monitor_container()
    secret = by_kind("Secret")["stringData"]
    environ: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            environ[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            assert by_kind("Secret")["metadata"]["name"] == ref["name"]
            environ[var["name"]] = secret[ref["key"]]
    path = tmp_path / "config.yaml"
    path.write_text(by_kind("ConfigMap")["data"]["config.yaml"])
    args = container["args"]
    return load_as_deployed(path, args[args.index("--listen") + 1], environ, monkeypatch)


def test_kubernetes_files_parse_and_hold_the_expected_objects() -> None:
    """sidecar.yaml and servicemonitor.yaml parse; every document has apiVersion, kind and a name."""
    docs = k8s_docs() + [
        d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "servicemonitor.yaml").read_text()) if d
    ]
    assert ["ConfigMap", "Secret", "Deployment", "Service", "Service", "ServiceMonitor"] == [d["kind"] for d in docs]
    for doc in docs:
        assert doc["apiVersion"]
        assert doc["metadata"]["name"]


def test_sidecar_probes_hit_healthz_and_readyz_on_the_listen_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Liveness is /healthz, readiness /readyz, both on the named port that is the config's listen port."""
    container = monitor_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert "/healthz" == container["livenessProbe"]["httpGet"]["path"]
    assert "/readyz" == container["readinessProbe"]["httpGet"]["path"]
    for probe in ("livenessProbe", "readinessProbe"):
        port = container[probe]["httpGet"]["port"]
        assert 9108 == ports.get(port, port)
    config = sidecar_config(tmp_path, monkeypatch)
    assert "0.0.0.0:9108" == config.listen
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert "0.0.0.0:9108" == env["PAM_MONITOR_LISTEN"]
    annotations = by_kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    expected = {"prometheus.io/scrape": "true", "prometheus.io/port": "9108", "prometheus.io/path": "/metrics"}
    assert expected == annotations


def test_sidecar_config_validates_and_fits_the_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap config loads; state_dir is a writable emptyDir; grace period exceeds shutdown_timeout."""
    config = sidecar_config(tmp_path, monkeypatch)
    assert 5 == len(config.checks)
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    container = monitor_container()
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    state = mounts[str(config.state_dir)]
    assert "emptyDir" in volumes[state["name"]]
    assert not state.get("readOnly", False)
    args = container["args"]
    config_mount = mounts[str(Path(args[args.index("--config") + 1]).parent)]
    assert by_kind("ConfigMap")["metadata"]["name"] == volumes[config_mount["name"]]["configMap"]["name"]
    assert pod["terminationGracePeriodSeconds"] > config.shutdown_timeout


def test_sidecar_secrets_come_from_the_secret_and_every_config_variable_is_set() -> None:
    """DATABASE_URL and PAGERDUTY_ROUTING_KEY come from secretKeyRef; each ${VAR} of the config has an env."""
    env = {v["name"]: v for v in monitor_container()["env"]}
    for name in ("DATABASE_URL", "PAGERDUTY_ROUTING_KEY"):
        assert name == env[name]["valueFrom"]["secretKeyRef"]["key"]
    referenced = set(re.findall(r"\$\{([A-Za-z_]\w*)", by_kind("ConfigMap")["data"]["config.yaml"]))
    assert {"DATABASE_URL", "PAGERDUTY_ROUTING_KEY"} == referenced
    assert set() == referenced - set(env)


def test_sidecar_runs_locked_down_with_resources_for_60_mb() -> None:
    """Non-root, read-only root filesystem, no privilege escalation; requests cover ~60 MB RSS, limit above."""
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    container = monitor_container()
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert ["ALL"] == security["capabilities"]["drop"]
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert mebibytes(requests["memory"]) >= 60e6 / 2**20
    assert mebibytes(limits["memory"]) >= 2 * mebibytes(requests["memory"])


def test_metrics_service_and_servicemonitor_select_the_monitor_port() -> None:
    """The pam-monitor Service targets the `metrics` port and the ServiceMonitor selects that Service."""
    service = by_kind("Service", "pam-monitor")
    assert [{"name": "metrics", "port": 9108, "targetPort": "metrics"}] == service["spec"]["ports"]
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = yaml.safe_load((DEPLOY / "kubernetes" / "servicemonitor.yaml").read_text())
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    backend = by_kind("Service", "pam-backend")
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= backend["metadata"]["labels"].items()
    assert "metrics" == monitor["spec"]["endpoints"][0]["port"]


# ---------------------------------------------------------------------------------------------- Docker


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions of deploy/Dockerfile as (KEYWORD, arguments) per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), args.strip()))
    return stages


def final_stage() -> dict[str, list[str]]:
    """The runtime stage's instructions by keyword."""
    out: dict[str, list[str]] = {}
    for keyword, args in dockerfile_stages()[-1]:
        out.setdefault(keyword, []).append(args)
    return out


def healthcheck_command() -> list[str]:
    """The exec-form HEALTHCHECK command."""
    (spec,) = final_stage()["HEALTHCHECK"]
    command: list[str] = json.loads(spec[spec.index("CMD") + 3:].strip())
    return command


def dockerfile_env() -> dict[str, str]:
    """ENV values of the runtime stage (key=value form)."""
    env: dict[str, str] = {}
    for args in final_stage()["ENV"]:
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def test_dockerfile_runtime_is_slim_non_root_with_the_contracted_entrypoint() -> None:
    """python:3.11-slim, a numeric non-root USER, EXPOSE 9108, SIGTERM, ENTRYPOINT/CMD as DESIGN §8 says."""
    stages = dockerfile_stages()
    assert all(stage[0] == ("FROM", stage[0][1]) and stage[0][1].startswith("python:3.11-slim") for stage in stages)
    final = final_stage()
    (user,) = final["USER"]
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) > 0
    assert ["9108"] == final["EXPOSE"]
    assert ["SIGTERM"] == final["STOPSIGNAL"]
    assert [["pam-monitor"]] == [json.loads(e) for e in final["ENTRYPOINT"]]
    assert [["run", "--config", "/etc/pam-monitor/config.yaml", "--listen", "0.0.0.0:9108"]] == [
        json.loads(c) for c in final["CMD"]
    ]
    assert any(re.search(r"pip install \.$", args) for _, args in stages[0])
    assert ["python", "-c"] == healthcheck_command()[:2]


def test_dockerfile_state_volume_is_where_the_loaded_config_keeps_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example config, loaded with the image's ENV and CMD, puts state_dir on the declared VOLUME."""
    env = dockerfile_env() | {"DATABASE_URL": "postgresql://u@db:5432/x", "PAGERDUTY_ROUTING_KEY": "k" * 32}
    cmd = json.loads(final_stage()["CMD"][0])
    config = load_as_deployed(ROOT / "examples" / "pam-monitor.yaml", cmd[cmd.index("--listen") + 1], env, monkeypatch)
    (volume,) = final_stage()["VOLUME"]
    assert [str(config.state_dir)] == json.loads(volume)
    assert "0.0.0.0:9108" == config.listen


def _dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        glob = pattern.replace("**/", "*")
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, glob) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerfile_copies_what_pip_install_needs_and_dockerignore_keeps_it() -> None:
    """Every COPY source exists and survives .dockerignore; the build stage copies pyproject's packages+readme."""
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "tests", ".pam-monitor", "**/__pycache__"} <= set(patterns)
    sources: list[str] = []
    for stage in dockerfile_stages():
        for keyword, args in stage:
            if keyword == "COPY" and "--from" not in args:
                sources += shlex.split(args)[:-1]
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert [] == missing
    assert [] == [s for s in sources if _dockerignored(s, patterns)]
    assert _dockerignored("monitor/__pycache__/x.pyc", patterns)
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = {"pyproject.toml", project["project"]["readme"], *packages}
    assert set() == needed - set(sources)


@pytest.fixture
def health_server() -> Iterator[tuple[str, dict[str, int]]]:
    """A real HTTP server whose /healthz answers the status code held in the returned dict."""
    state = {"status": 200}

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok" if state["status"] == 200 else "stalled", status_code=state["status"])

    with serve_asgi(Starlette(routes=[Route("/healthz", healthz)])) as base:
        yield base, state


def _run_healthcheck(url: str) -> int:
    command = healthcheck_command()
    env = {**dockerfile_env(), "PAM_MONITOR_HEALTHCHECK_URL": url}
    env.pop("PATH", None)
    result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False)
    return result.returncode


def test_docker_healthcheck_command_reports_healthy_stalled_and_down(
    health_server: tuple[str, dict[str, int]],
) -> None:
    """The HEALTHCHECK one-liner exits 0 on 200, 1 on 503 and 1 when nothing listens (real HTTP server)."""
    base, state = health_server
    assert "http://127.0.0.1:9108/healthz" == dockerfile_env()["PAM_MONITOR_HEALTHCHECK_URL"]
    assert 0 == _run_healthcheck(f"{base}/healthz")
    state["status"] = 503
    assert 1 == _run_healthcheck(f"{base}/healthz")
    assert 1 == _run_healthcheck(f"http://127.0.0.1:{free_port()}/healthz")


# ---------------------------------------------------------------------------------------------- systemd

UNIT = DEPLOY / "systemd" / "pam-monitor.service"


def unit_directives() -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (systemd allows a key more than once, configparser alone does not)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False,
                                       dict_type=dict)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        sections[current].setdefault(key.strip(), []).append(value.strip())
    parser.read_string(UNIT.read_text())  # and it must parse as an INI file too
    assert set(sections) == set(parser.sections())
    return sections


def test_systemd_unit_has_the_contracted_directives() -> None:
    """Type=exec, run --config, HUP reload, optional env file, own user, state dir, restart, stop timeout."""
    unit = unit_directives()
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert "exec" == service["Type"]
    assert service["ExecStart"].endswith("/pam-monitor run --config /etc/pam-monitor/config.yaml")
    assert "/bin/kill -HUP $MAINPID" == service["ExecReload"]
    assert "-/etc/pam-monitor/env" == service["EnvironmentFile"]
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root")
    assert "pam-monitor" == service["StateDirectory"]
    assert "PAM_MONITOR_STATE_DIR=%S/pam-monitor" == service["Environment"]
    assert "on-failure" == service["Restart"]
    assert "2" in service["RestartPreventExitStatus"].split()
    assert int(service["TimeoutStopSec"].removesuffix("s")) > 5
    hardening = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }
    assert hardening == {k: service.get(k) for k in hardening}
    assert ["multi-user.target"] == unit["Install"]["WantedBy"]


def _unit_with_real_binary(tmp_path: Path) -> Path:
    # verify insists that ExecStart's binary exists; point it at the entry point installed next to this Python.
    binary = shutil.which("pam-monitor", path=str(Path(sys.executable).parent))
    assert binary is not None, "the project is not installed in this environment (pip install -e .)"
    copy = tmp_path / "pam-monitor.service"
    copy.write_text(UNIT.read_text().replace("/opt/pam-monitor/bin/pam-monitor", binary))
    return copy


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify finds no unknown key, bad value or missing binary in the unit."""
    result = run([tool("systemd-analyze"), "verify", str(_unit_with_real_binary(tmp_path))], cwd=tmp_path)
    assert (0, "") == (result.returncode, result.stderr.strip())


def test_systemd_unit_exposure_is_rated_ok(tmp_path: Path) -> None:
    """systemd-analyze security rates the unit's exposure at most 2.0 ("OK") out of 10."""
    result = run(
        [tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20", str(_unit_with_real_binary(tmp_path))],
        cwd=tmp_path,
    )
    assert 0 == result.returncode, result.stdout[-2000:] + result.stderr


# ---------------------------------------------------------------------------------------------- README


def test_deploy_readme_explains_every_file() -> None:
    """deploy/README.md names every file in deploy/ (and the root .dockerignore)."""
    readme = (DEPLOY / "README.md").read_text()
    files = [p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file() and p.name != "README.md"]
    assert [] == [f for f in files if f not in readme]
    assert ".dockerignore" in readme


# ---------------------------------------------------------------------------------------------- the real daemon


def _families(exposition: str) -> set[str]:
    """Metric family and sample names in a /metrics body."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.mark.e2e
def test_daemon_runs_the_sidecar_config_and_answers_the_kubelet_and_prometheus(tmp_path: Path) -> None:
    """`pam-monitor run` with the ConfigMap config, the container's args and env (localhost only, no sinks):

    /healthz and /readyz turn 200, /metrics carries every family the rules and the dashboard read, and
    SIGTERM ends it with exit 0 within terminationGracePeriodSeconds.
    """
    backend_health = {"status": "healthy"}

    async def health(request: Request) -> Response:
        return JSONResponse(backend_health)

    container = monitor_container()
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    config = yaml.safe_load(by_kind("ConfigMap")["data"]["config.yaml"])
    closed = free_port()
    with serve_asgi(Starlette(routes=[Route("/health", health)])) as backend:
        # Only what would leave 127.0.0.1 changes: the backend (same pod: 127.0.0.1 too), state, sinks.
        config["targets"]["backend"]["base_url"] = backend
        config["state_dir"] = str(tmp_path / "state")
        config["alerts"]["sinks"] = []
        config["defaults"] |= {"interval": "2s", "timeout": "1s"}  # a round in seconds, not 30 s
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAM_MONITOR_")}
        env |= {v["name"]: v["value"] for v in container["env"] if "value" in v}
        env |= {"PAM_MONITOR_LISTEN": f"127.0.0.1:{port}",
                "DATABASE_URL": f"postgresql://pam_monitor:x@127.0.0.1:{closed}/postgres",
                "PAGERDUTY_ROUTING_KEY": "unused"}
        args = list(container["args"])
        args[args.index("--config") + 1] = str(path)
        args[args.index("--listen") + 1] = f"127.0.0.1:{port}"
        binary = shutil.which("pam-monitor", path=str(Path(sys.executable).parent))
        assert binary is not None
        proc = subprocess.Popen([binary, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            codes: dict[str, int] = {}
            body = ""
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                for _ in range(300):
                    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                    try:
                        codes = {
                            probe: client.get(container[probe]["httpGet"]["path"]).status_code
                            for probe in ("livenessProbe", "readinessProbe")
                        }
                    except httpx.TransportError:
                        codes = {}
                    if codes == {"livenessProbe": 200, "readinessProbe": 200}:
                        body = client.get("/metrics").text
                        break
                    time.sleep(0.1)
            assert {"livenessProbe": 200, "readinessProbe": 200} == codes
            read = {n for r in rules() for n in metric_names(r["expr"])}
            read |= {n for expr in dashboard_exprs() for n in metric_names(expr)}
            assert set() == (read - recorded_names()) - _families(body)
            proc.send_signal(signal.SIGTERM)
            assert 0 == proc.wait(timeout=pod["terminationGracePeriodSeconds"])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stderr:
                proc.stderr.close()
