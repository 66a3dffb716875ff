"""deploy/grafana: the dashboard imports cleanly, lays out without overlap, and every query is valid PromQL over
series the daemon exports, covering all of them and honouring the dashboard's variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.helpers import (
    BLACKBOX_METRICS,
    DOCUMENTED_METRICS,
    KNOWN_LABELS,
    SERIES_NAMES,
    dashboard,
    dashboard_exprs,
    label_names,
    metric_names,
    recorded_names,
    run,
    tool,
)

GRAFANA_BUILTINS = frozenset({"__rate_interval", "__interval", "__range"})
GRID_COLUMNS = 24


def _variables_used(text: str) -> set[str]:
    return set(re.findall(r"\$\{?(\w+)", text))


def test_dashboard_has_a_uid_unique_ids_and_no_overlapping_panels() -> None:
    """A stable uid (re-import updates, not duplicates); panel ids unique; panels inside the grid, none overlapping;
    every panel with data reads the datasource variable."""
    dash = dashboard()
    assert dash["uid"]
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert sorted(set(ids)) == sorted(ids)
    boxes = [(p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"], p["gridPos"]["h"], p["title"]) for p in panels]
    overlaps = [
        (a[4], b[4]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
        if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
    ]
    assert [] == overlaps
    assert [] == [b[4] for b in boxes if b[0] + b[2] > GRID_COLUMNS]
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert "${datasource}" == panel["datasource"]["uid"], panel["title"]


def test_every_variable_a_query_uses_is_defined() -> None:
    """Panel and variable queries use only variables the dashboard defines (or Grafana's built-ins)."""
    variables = dashboard()["templating"]["list"]
    defined = {v["name"] for v in variables}
    used = {name for expr in dashboard_exprs() for name in _variables_used(expr)}
    used |= {name for v in variables if v["type"] == "query" for name in _variables_used(v["query"]["query"])}
    used |= {name for p in dashboard()["panels"] if "datasource" in p
             for name in _variables_used(p["datasource"]["uid"])}
    assert set() == used - defined - GRAFANA_BUILTINS


def test_dashboard_queries_use_design_metrics_and_cover_all_of_them() -> None:
    """Every query names only documented series (or recorded rules) and every documented metric has a panel: the
    core set and blackbox_exporter's HTTP and TLS series (phases, versions, content length, certificate expiry)."""
    recorded = recorded_names()
    used: set[str] = set()
    for expr in dashboard_exprs():
        names = metric_names(expr)
        assert set() == names - SERIES_NAMES - recorded, expr
        assert set() == label_names(expr) - KNOWN_LABELS, expr
        assert 'job=~"$job"' in expr, expr
        used |= {n.removesuffix("_bucket") for n in names}
    assert set() == (DOCUMENTED_METRICS | BLACKBOX_METRICS) - used
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert set() == metric_names(variable["query"]["query"]) - SERIES_NAMES, variable["name"]


def test_dashboard_per_check_queries_filter_by_the_check_variable() -> None:
    """Panels over per-check series honour the `check` variable."""
    per_check = (DOCUMENTED_METRICS | BLACKBOX_METRICS) - {
        "pam_monitor_alerts_firing", "pam_monitor_notifications_total", "pam_monitor_notification_queue_depth",
        "pam_monitor_scheduler_lateness_seconds", "pam_monitor_scheduler_skipped_runs_total",
        "pam_monitor_config_last_reload_successful", "pam_monitor_build_info",
        "pam_monitor_credential_expiry_timestamp_seconds",  # per credential (a header, an identity), not per check
    }
    for expr in dashboard_exprs():
        if {n.removesuffix("_bucket") for n in metric_names(expr)} & per_check:
            assert 'check=~"$check"' in expr, expr


@pytest.mark.process
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
