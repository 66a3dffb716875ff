"""SLOs (monitor/slo.py): the error budget left from the history over simulated weeks (injected clock), the
Prometheus burn-rate rules `pam-monitor rules` writes (checked and unit-tested with promtool), and the budgets on
/status and the page."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.core.config import Config
from monitor.history import History
from monitor.page import render_page
from monitor.slo import budgets, prometheus_rules, render_rules, specs
from monitor.state import State
from tests.monitor.test_cli import _run
from tests.monitor.test_history import DAY, START, Clock, _simulate

TARGETS = {"backend": {"base_url": "http://127.0.0.1:9"}}


def _config(**root: Any) -> Config:
    checks = [{"name": "api", "kind": "http", "target": "backend", "slo": {"objective": "99%", "window": "7d"}},
              {"name": "web", "kind": "http", "target": "backend"}]
    return Config.model_validate({"targets": TARGETS, "checks": checks, **root})


def test_objectives_and_burn_alerts_default_to_the_workbook() -> None:
    """`99%` reads as 0.99; with no `alerts`, an SLO pages at 14.4x over 1h/5m and 6x over 6h/30m and opens a
    ticket (warning) at 1x over 3d/6h; a group's SLO pools its checks."""
    config = _config(slos={"site": {"checks": ["api", "web"], "objective": 0.995, "window": "30d"}})
    found = specs(config)
    assert [("api", ("api",), 0.99, "7d"), ("site", ("api", "web"), 0.995, "30d")] == [
        (s.name, s.checks, s.objective, s.window_label) for s in found]
    assert [("critical", 14.4, 3600, 300), ("critical", 6, 21600, 1800), ("warning", 1, 259200, 21600)] == [
        (a.severity, a.factor, a.long, a.short) for a in found[0].alerts]


def test_the_budget_left_over_simulated_weeks(tmp_path: Path) -> None:
    """Three simulated weeks at a run every 5 minutes: a bad spell in the first week is outside a 7-day window
    (budget whole), 10 bad runs in the last week spend about half of a 99 % budget; the group pools both checks'
    runs over 30 days."""
    clock = Clock(START)
    history = History(tmp_path, clock)
    per_day = int(DAY / 300)
    early = set(range(per_day, per_day + 50))  # day 2: 50 bad runs, outside the last 7 days at the end
    late = set(range(18 * per_day, 18 * per_day + 10))  # day 19: 10 bad runs, inside them
    _simulate(history, clock, ["api"], 21 * DAY, bad=early | late)
    _simulate(history, Clock(START), ["web"], 21 * DAY)
    history.refresh()
    config = _config(slos={"site": {"checks": ["api", "web"], "objective": "99.9%", "window": "30d"}})
    got = {b["slo"]: b for b in budgets(config, history.summary())}
    week = 7 * per_day
    assert (week, round(1 - 10 / week, 6), round(1 - (10 / week) / 0.01, 6)) == (
        got["api"]["runs"], got["api"]["availability"], got["api"]["budget_left"])
    pooled = 2 * 21 * per_day
    assert (pooled, round(1 - (60 / pooled) / 0.001, 6)) == (got["site"]["runs"], got["site"]["budget_left"])
    assert got["site"]["budget_left"] < 0  # 60 bad runs of 12,096 overspend a 99.9 % budget


def test_no_history_means_no_budget_figure(tmp_path: Path) -> None:
    """An SLO whose checks never ran has no availability and no budget figure (None), not a full budget."""
    history = History(tmp_path, Clock(START))
    history.refresh()
    assert [(0, None, None)] == [(b["runs"], b["availability"], b["budget_left"])
                                 for b in budgets(_config(), history.summary())]


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install prometheus")
    return found


@pytest.mark.process
def test_the_rules_pass_promtool_and_page_on_a_fast_burn(tmp_path: Path) -> None:
    """The generated rules pass `promtool check rules`; in promtool's unit test a check failing 1 run in 31
    (3.2 %, over 14.4 x a 99.9 % budget) fires ErrorBudgetBurn for all three windows, each with its labels and
    sentences; a check that never failed records an error ratio of 0 (its failure counters do not exist) and
    stays silent."""
    config = Config.model_validate({"targets": TARGETS, "checks": [
        {"name": "api", "kind": "http", "target": "backend", "slo": {"objective": "99.9%"}},
        {"name": "quiet", "kind": "http", "target": "backend", "slo": {"objective": "99.9%"}}]})
    rules = tmp_path / "slo-rules.yml"
    rules.write_text(render_rules(config))
    promtool = _promtool()
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert 0 == checked.returncode, checked.stdout + checked.stderr
    series = 'pam_monitor_check_results_total{{job="pam-monitor", instance="pm:9108", check="{c}", kind="http", ' \
             'outcome="{o}"}}'
    test = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": series.format(c="api", o="ok"), "values": "0+30x400"},
                {"series": series.format(c="api", o="server_error"), "values": "0+1x400"},
                {"series": series.format(c="quiet", o="ok"), "values": "0+30x400"},
            ],
            "promql_expr_test": [{"expr": 'slo:pam_monitor_check_errors:ratio_rate5m{slo="quiet"}', "eval_time": "10m",
                                  "exp_samples": [{"labels": 'slo:pam_monitor_check_errors:ratio_rate5m{slo="quiet"}',
                                                   "value": 0}]}],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "ErrorBudgetBurn", "exp_alerts": [
                    {"exp_labels": {"severity": s, "slo": "api", "window": w},
                     "exp_annotations": {
                         "summary": f"SLO api is burning its error budget at over {f}x (over {w} and {short})",
                         "description": f"Errors over {w}: 3.226%, against an objective of 99.9% over 30d (checks: "
                                        f"api). A {f}x burn spends the whole budget in {hours} h."}}
                    for s, w, short, f, hours in (("critical", "1h", "5m", "14.4", "50"),
                                                  ("critical", "6h", "30m", "6", "120"),
                                                  ("warning", "3d", "6h", "1", "720"))]},
            ],
        }],
    }
    (tmp_path / "slo-test.yml").write_text(yaml.safe_dump(test))
    tested = subprocess.run([promtool, "test", "rules", "slo-test.yml"], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert 0 == tested.returncode, tested.stdout + tested.stderr


@pytest.mark.process
def test_rules_verb_writes_the_file(tmp_path: Path) -> None:
    """`pam-monitor rules -c FILE -o OUT` writes the rules (exit 0); without an SLO it writes no group and says
    so on stderr."""
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent("""\
        targets:
          backend: {base_url: "http://127.0.0.1:9"}
        checks:
          - {name: api, kind: http, target: backend, slo: {objective: 99.9%, window: 30d}}
          - {name: web, kind: http, target: backend}
        """))
    done = _run("rules", "-c", str(path), "-o", str(tmp_path / "out.yml"), "--job", "pm", cwd=tmp_path)
    assert 0 == done.returncode, done.stderr
    written = yaml.safe_load((tmp_path / "out.yml").read_text())
    alerts = [r for g in written["groups"] for r in g["rules"] if "alert" in r]
    assert ["1h", "6h", "3d"] == [a["labels"]["window"] for a in alerts]
    assert 'job="pm"' in written["groups"][0]["rules"][0]["expr"]
    path.write_text(path.read_text().replace(", slo: {objective: 99.9%, window: 30d}", ""))
    empty = _run("rules", "-c", str(path), cwd=tmp_path)
    assert (0, {"groups": []}) == (empty.returncode, yaml.safe_load(empty.stdout))
    assert "no slo" in empty.stderr
    assert {"groups": []} == prometheus_rules(Config.model_validate({}))


def test_status_and_page_show_the_budgets(tmp_path: Path) -> None:
    """/status lists each SLO's budget; the page has an "Error budgets" table with the budget left."""
    clock = Clock(START)
    history = History(tmp_path, clock)
    _simulate(history, clock, ["api"], 8 * DAY, bad=set(range(10)))
    history.refresh()
    state = State(lambda: 0.0)
    state.set_checks([("api", "http")], {"api": 300.0})
    config = _config()
    state.slos = lambda: budgets(config, history.summary())
    doc = state.status([])
    assert ["api"] == [s["slo"] for s in doc["slos"]]
    page = render_page(doc, "svc", "ready", now=clock.now)
    assert "<h2>Error budgets</h2>" in page
    assert "99% over 7d" in page
    assert " left</span>" in page
