"""deploy/prometheus: promtool accepts the rules and the config, the rule unit tests pass, and every rule reads
series, labels and values the daemon really exports."""

from __future__ import annotations

import re

import pytest
import yaml

from alerts import NOTIFICATION_RESULTS
from alerts.judge.rules import ALERTNAMES, SEVERITIES
from monitor.core.config import CHECK_KINDS, load_config
from monitor.core.results import Outcome
from monitor.metrics import SKIP_REASONS
from tests.deploy.helpers import (
    DEPLOY,
    DOCUMENTED_METRICS,
    EXAMPLE,
    KNOWN_LABELS,
    SERIES_NAMES,
    label_names,
    matcher_values,
    metric_names,
    recorded_names,
    rules,
    run,
    tool,
)


def test_metric_name_parser_sees_names_and_ignores_strings_and_labels() -> None:
    """The regex-based extractor finds series and recorded names, not label values, ranges or variables."""
    expr = ('histogram_quantile(0.99, sum by (check, le) (rate(pam_monitor_check_duration_seconds_bucket'
            '{job=~"$job", check="probe_fake"}[$__rate_interval]))) > on (check) job:probe_success:avg5m')
    assert {"pam_monitor_check_duration_seconds_bucket", "job:probe_success:avg5m"} == metric_names(expr)
    assert {"check", "le", "job"} == label_names(expr)
    assert {"a", "b"} == matcher_values('x{outcome=~"a|b", kind="http"}', "outcome")


@pytest.mark.process
def test_promtool_check_rules_passes() -> None:
    """promtool accepts rules.yml (syntax, PromQL, templates, no duplicate rules)."""
    result = run([tool("promtool"), "check", "rules", "deploy/prometheus/rules.yml"])
    assert 0 == result.returncode, result.stdout + result.stderr


@pytest.mark.process
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


def _slo_alertnames() -> set[str]:
    """The alertnames of the rules `pam-monitor rules` writes for a config with an SLO."""
    from monitor.core.config import Config
    from monitor.slo import prometheus_rules

    config = Config.model_validate({"targets": {"b": {"base_url": "http://127.0.0.1:1"}}, "checks": [
        {"name": "api", "kind": "http", "target": "b", "path": "/", "slo": {"objective": "99.9%"}}]})
    return {r["alert"] for g in prometheus_rules(config)["groups"] for r in g["rules"] if "alert" in r}


def test_every_daemon_alert_has_a_rule_with_bounded_static_labels() -> None:
    """Each alertname the daemon raises has a Prometheus rule; severities come from the daemon's set; no label
    is templated (so a rule cannot mint unbounded label values). ErrorBudgetBurn's rules depend on the config's
    SLOs: `pam-monitor rules` writes them, and it has one per SLO burn (tests/alerts/test_burn.py holds them to
    the daemon's, tests/monitor/test_slo.py runs promtool on them)."""
    alerting = [r for r in rules() if "alert" in r]
    generated = _slo_alertnames()
    assert {"ErrorBudgetBurn"} == generated
    assert set() == set(ALERTNAMES) - generated - {r["alert"] for r in alerting}
    for rule in alerting:
        labels = rule.get("labels", {})
        assert labels.get("severity") in set(SEVERITIES), rule["alert"]
        templated = {k: v for k, v in labels.items() if "{{" in str(v) or "$" in str(v)}
        assert {} == templated, rule["alert"]


def test_rules_use_only_design_metric_names_labels_and_values() -> None:
    """Rule expressions name only documented series or recorded ones, known labels, real outcomes and kinds:
    a typo there is an alert that can never fire."""
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
    """Recorded names read level:metric:operation (Prometheus' convention) and the metric part is one of ours."""
    for name in recorded_names():
        level, metric, operation = name.split(":")
        assert level, name
        assert operation, name
        assert metric.removesuffix("_total") in {n.removesuffix("_total") for n in DOCUMENTED_METRICS}, name


@pytest.mark.process
def test_promtool_check_config_passes_and_scrapes_what_the_rules_watch() -> None:
    """prometheus.yml is valid and loads rules.yml; its pam-monitor job is the one PamMonitorDown watches, and it
    scrapes the address the example config listens on."""
    result = run([tool("promtool"), "check", "config", "deploy/prometheus/prometheus.yml"])
    assert 0 == result.returncode, result.stdout + result.stderr
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert "rules.yml" in config["rule_files"]
    down = next(r for r in rules() if r.get("alert") == "PamMonitorDown")
    job = re.search(r'up\{job="([^"]+)"\}', down["expr"])
    assert job is not None, down["expr"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    targets = [t for static in jobs[job.group(1)]["static_configs"] for t in static["targets"]]
    example = load_config(EXAMPLE, environ={"DATABASE_URL": "postgresql://u@h/db", "PAGERDUTY_ROUTING_KEY": "k"})
    assert [example.listen] == targets
