"""What the deploy tests share: paths, the real tools, a PromQL name extractor, and readers for the deploy files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.core.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLE = ROOT / "examples" / "pam-monitor.yaml"
INSTALL_HINT = "apt-get install -y prometheus prometheus-alertmanager"

# The documented default metric names, exactly (what the dashboard and the rules may use: they must work without
# `metrics.detail`). Histograms also expose _bucket/_sum/_count.
DOCUMENTED_METRICS = frozenset({
    "probe_success",
    "probe_duration_seconds",
    "probe_http_status_code",
    "pam_monitor_check_results_total",
    "pam_monitor_check_last_outcome",
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
    "pam_monitor_credential_expiry_timestamp_seconds",
})
# blackbox_exporter's per-probe HTTP and TLS series, under its names and meanings (README, blackbox_exporter parity).
BLACKBOX_METRICS = frozenset({
    "probe_http_duration_seconds",
    "probe_http_version",
    "probe_http_content_length",
    "probe_dns_lookup_time_seconds",
    "probe_http_ssl",
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_tls_version_info",
})
# The opt-in families (`metrics: {detail: [...]}`): documented, but off by default.
DETAIL_METRICS = frozenset({"pam_monitor_check_outcome", "pam_monitor_check_duration_seconds"})
HISTOGRAMS = ("pam_monitor_scheduler_lateness_seconds",)
SERIES_NAMES = DOCUMENTED_METRICS | BLACKBOX_METRICS | {
    f"{h}{s}" for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")
}
# Labels the daemon puts on its series, plus what Prometheus adds (job, instance, the `service` target label).
KNOWN_LABELS = frozenset({
    "check", "kind", "outcome", "from", "to", "table", "phase", "alertname", "severity", "sink", "result",
    "reason", "version", "le", "job", "instance", "service", "credential",
})


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


def installed_binary() -> str:
    """The `pam-monitor` entry point installed next to this interpreter (pip install -e .)."""
    binary = shutil.which("pam-monitor", path=str(Path(sys.executable).parent))
    assert binary is not None, "the project is not installed in this environment (pip install -e .)"
    return binary


def load_as_deployed(path: Path, listen: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Config:
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


def listen_port(listen: str) -> int:
    """The port of a host:port listen address."""
    return int(listen.rsplit(":", 1)[1])


# ---------------------------------------------------------------------------------------------- PromQL names

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


# ---------------------------------------------------------------------------------------------- file readers


def rules() -> list[dict[str, Any]]:
    """Every rule in deploy/prometheus/rules.yml."""
    doc = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    """Names of the recording rules in rules.yml."""
    return {r["record"] for r in rules() if "record" in r}


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON."""
    data: dict[str, Any] = json.loads((DEPLOY / "grafana" / "pam-monitor.json").read_text())
    return data


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of every dashboard panel."""
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def k8s_docs(name: str = "sidecar.yaml") -> list[dict[str, Any]]:
    """The documents of one file of deploy/kubernetes/."""
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if d]


def by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one document of this kind (and name) in sidecar.yaml."""
    found = [d for d in k8s_docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert 1 == len(found), (kind, name)
    return found[0]


def pod_spec() -> dict[str, Any]:
    """The pod template spec of the sidecar Deployment."""
    spec: dict[str, Any] = by_kind("Deployment")["spec"]["template"]["spec"]
    return spec


def monitor_container() -> dict[str, Any]:
    """The pam-monitor container of the Deployment."""
    return next(c for c in pod_spec()["containers"] if c["name"] == "pam-monitor")


def arg_after(args: list[str], flag: str) -> str:
    """The value that follows `flag` in an argv."""
    return args[args.index(flag) + 1]


def metric_families(exposition: str) -> set[str]:
    """Metric family and sample names in a /metrics body."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
