"""Service level objectives: what each one covers, how much of its error budget is left (from the history), and
the Prometheus recording and alerting rules that watch its burn rate (`pam-monitor rules`).

An SLO is a check's own `slo` (named after the check) or a group under `slos:` (its checks' runs pooled). The
error budget over its window is `1 - objective`; the budget left is `1 - (bad runs / runs) / (1 - objective)`
over the window (below 0 when overspent). `rate_limited` runs are not counted, as in the history.

Burn-rate alerts (the SRE workbook's multiwindow, multi-burn-rate alerts) fire `ErrorBudgetBurn{slo, window}`
when the error ratio over both the long and the short window exceeds `factor x (1 - objective)`: by default
critical at 14.4x over 1 h and 5 min and at 6x over 6 h and 30 min, warning at 1x over 3 d and 6 h. They are
Prometheus rules over `pam_monitor_check_results_total`, written by `pam-monitor rules`, and the daemon's own alert
(alerts/judge/burn.py); both read `SloSpec` (monitor/core/config/slo.py) and compare with the same `allowed` number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from monitor.core.config import Config
from monitor.core.config.slo import SloSpec, duration_label, slo_specs

ALERTNAME = "ErrorBudgetBurn"


def specs(config: Config) -> list[SloSpec]:
    """Every SLO of a config: the checks' own (named after them), then the groups, by name."""
    return slo_specs(config)


def budget(spec: SloSpec, over_time: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The /status entry of one SLO from the history summary (monitor/history.py): runs and availability over
    its window (its checks pooled) and the share of the error budget left (None without runs)."""
    runs = good = 0
    for check in spec.checks:
        window = (over_time.get(check) or {}).get(spec.window_label) or {}
        n, availability = window.get("runs") or 0, window.get("availability")
        if n and availability is not None:
            runs += n
            good += round(availability * n)
    allowed = 1 - spec.objective
    availability = good / runs if runs else None
    left = None if availability is None else 1 - (1 - availability) / allowed
    return {"slo": spec.name, "checks": list(spec.checks), "objective": spec.objective, "window": spec.window_label,
            "runs": runs, "availability": None if availability is None else round(availability, 6),
            "budget_left": None if left is None else round(left, 6)}


def budgets(config: Config, over_time: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every SLO's budget entry, in `specs` order."""
    return [budget(s, over_time) for s in specs(config)]


def _prom_duration(seconds: float) -> str:
    return duration_label(seconds)


def _ratio(spec: SloSpec, window: str, job: str) -> str:
    # A check name may hold dots: escaped for the regular expression (a PromQL string: two backslashes).
    checks = "|".join(name.replace(".", "\\\\.") for name in spec.checks)
    selector = f'job="{job}", check=~"{checks}"'
    # An outcome's counter exists from its first run: with no failure yet, the bad side is empty, so it is 0.
    return (f'(sum(rate(pam_monitor_check_results_total{{{selector}, outcome!~"ok|rate_limited"}}[{window}])) '
            f"or vector(0)) / sum(rate(pam_monitor_check_results_total{{{selector}, "
            f'outcome!="rate_limited"}}[{window}]))')


def prometheus_rules(config: Config, *, job: str = "pam-monitor") -> dict[str, Any]:
    """The rule file: per SLO, the error ratio recorded over every window its alerts use, and one
    ErrorBudgetBurn alert per burn window (labels `slo`, `window`, `severity`)."""
    recording: list[dict[str, Any]] = []
    alerting: list[dict[str, Any]] = []
    for spec in specs(config):
        windows = sorted({w for a in spec.alerts for w in (a.long, a.short)})
        for w in windows:
            recording.append({"record": f"slo:pam_monitor_check_errors:ratio_rate{_prom_duration(w)}",
                              "expr": _ratio(spec, _prom_duration(w), job), "labels": {"slo": spec.name}})
        allowed = spec.allowed
        for a in spec.alerts:
            long, short = _prom_duration(a.long), _prom_duration(a.short)
            threshold = f"{a.factor:g} * {allowed:.10g}"
            alerting.append({
                "alert": ALERTNAME,
                "expr": f'slo:pam_monitor_check_errors:ratio_rate{long}{{slo="{spec.name}"}} > ({threshold}) '
                        f'and slo:pam_monitor_check_errors:ratio_rate{short}{{slo="{spec.name}"}} > ({threshold})',
                "labels": {"severity": a.severity, "slo": spec.name, "window": long},
                "annotations": {
                    "summary": f"SLO {spec.name} is burning its error budget at over {a.factor:g}x "
                               f"(over {long} and {short})",
                    "description": f"Errors over {long}: {{{{ $value | humanizePercentage }}}}, against an objective "
                                   f"of {spec.objective * 100:g}% over {spec.window_label} (checks: "
                                   f"{', '.join(spec.checks)}). A {a.factor:g}x burn spends the whole budget in "
                                   f"{spec.window / a.factor / 3600:.3g} h.",
                },
            })
    return {"groups": [{"name": "pam-monitor.slo.recording", "rules": recording},
                       {"name": "pam-monitor.slo.alerts", "rules": alerting}]} if recording else {"groups": []}


def render_rules(config: Config, *, job: str = "pam-monitor") -> str:
    """`prometheus_rules` as YAML, with a header saying where it came from."""
    head = ("# Prometheus rules for pam-monitor's SLOs, written by `pam-monitor rules` from the config file.\n"
            "# Check with: promtool check rules <this file>. Regenerate after changing an slo.\n")
    return head + yaml.safe_dump(prometheus_rules(config, job=job), sort_keys=False, width=120)


__all__ = ["ALERTNAME", "SloSpec", "budget", "budgets", "prometheus_rules", "render_rules", "specs"]
