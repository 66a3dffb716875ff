"""The series budget of /metrics per check kind (README "Metrics"): counted at start-up, after one run, and after
one run of each outcome the kind can produce, for a check of every kind; the README's table is held to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import probes
from monitor.core.config import Config, load_config
from monitor.core.results import HttpFacts, ProbeResult, Result, TlsFacts
from monitor.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
ENVIRON = {"DATABASE_URL": "postgresql://app@127.0.0.1/app", "PAGERDUTY_ROUTING_KEY": "r" * 32,
           "SUPABASE_JWT_SECRET": "s" * 40}
POSTGREST = {"name": "rest_tables", "kind": "postgrest", "target": "backend", "required_tables": ["a", "b"]}
HEARTBEAT = {"name": "nightly", "kind": "heartbeat", "interval": "1d", "token": "t" * 20}

# kind -> (its example check, series at start-up, after one ok run, after one run of each of its outcomes).
# Each further outcome adds its counter; each distinct change of outcome adds a transitions series.
BUDGET: dict[str, tuple[str, int, int, int]] = {
    "http": ("backend_health", 13, 15, 39),
    "auth_contract": ("settings_get_unauth", 13, 15, 39),
    "voice": ("voice_health", 15, 17, 43),  # + 2 phases (health, synthesis)
    "postgrest": ("rest_tables", 15, 17, 43),  # + a table-present series per required table (2 here)
    "journey": ("settings_journey", 17, 19, 45),  # + a phase per step (4 here)
    "tenant_isolation": ("settings_isolation", 13, 15, 39),
    "db": ("db_roundtrip", 12, 14, 46),  # no HTTP series; + 5 tables and 3 phases (connect, query, canary)
    "heartbeat": ("nightly", 4, 6, 10),  # no HTTP series
}
HTTP_CHECK_LIMIT = 20
"""blackbox_exporter's http_2xx probe: 17 series over plain HTTP, 21 over TLS (README, blackbox_exporter parity)."""


def _example_checks() -> dict[str, object]:
    configs = [load_config(ROOT / "examples" / name, environ=ENVIRON) for name in ("pam-monitor.yaml",
                                                                                    "journeys.yaml")]
    checks: dict[str, object] = {c.name: c for config in configs for c in config.checks}
    extra = Config.model_validate({"targets": {"backend": {"base_url": "http://127.0.0.1:9"}},
                                   "checks": [POSTGREST, HEARTBEAT]})
    checks.update({c.name: c for c in extra.checks})
    return checks


def _count(metrics: Metrics, check: str) -> int:
    return sum(1 for line in metrics.render().decode().splitlines()
               if not line.startswith("#") and f'check="{check}"' in line)


@pytest.mark.parametrize("kind", sorted(BUDGET))
def test_series_per_check_stay_within_the_budget(kind: str) -> None:
    """A check of each kind exposes exactly its budgeted number of series at start-up, after an ok run and after
    one run of each of its outcomes (in the kind's order, each a change from the one before)."""
    name, at_start, after_one, after_each = BUDGET[kind]
    check = _example_checks()[name]
    record = probes.REGISTRY[kind]
    assert kind == check.kind  # type: ignore[attr-defined]
    metrics = Metrics(process_metrics=False)
    metrics.set_checks([(name, kind, record.outcomes, record.tables(check), record.phases(check),
                         record.speaks_http)])
    counted = [_count(metrics, name)]
    previous = None
    for i, outcome in enumerate(record.outcomes):
        metrics.observe(Result(name, kind, ProbeResult(outcome, "m"), duration_s=0.1, started_at=1.0,
                               finished_at=2.0), previous)
        previous = outcome
        if i == 0:
            counted.append(_count(metrics, name))
    counted.append(_count(metrics, name))
    assert [at_start, after_one, after_each] == counted


def test_an_https_check_has_no_more_series_than_blackbox_exporter_gives_the_same_probe() -> None:
    """An http check over TLS, after a good run, has its default series plus the three TLS ones: at most 20."""
    metrics = Metrics(process_metrics=False)
    record = probes.REGISTRY["http"]
    metrics.set_checks([("api", "http", record.outcomes, (), (), True)])
    tls = TlsFacts("TLSv1.3", 1.8e9, "CN=a", "CN=b", earliest_expiry=1.8e9, chain_expiry=1.8e9)
    facts = HttpFacts(phases={"resolve": 0.001}, version=1.1, content_length=2, tls=tls)
    metrics.observe(Result("api", "http", ProbeResult(record.outcomes[0], "m", status_code=200, http=facts),
                           duration_s=0.1, started_at=1.0, finished_at=2.0), None)
    assert 18 == _count(metrics, "api") <= HTTP_CHECK_LIMIT


def test_detail_families_add_what_they_say() -> None:
    """outcome_onehot adds a series per declared outcome, duration_histogram 12 (10 buckets, sum, count)."""
    record = probes.REGISTRY["http"]
    counts = []
    for detail in ((), ("outcome_onehot",), ("duration_histogram",)):
        metrics = Metrics(process_metrics=False)
        metrics.set_checks([("h", "http", record.outcomes, (), (), True)], detail=detail)
        counts.append(_count(metrics, "h"))
    assert [13, 13 + len(record.outcomes), 13 + 12] == counts


def test_the_readme_budget_table_is_this_one() -> None:
    """README "Metrics" lists, per kind, the same three figures the budget test holds."""
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d+ \| \d+ \| \d+) \|", readme, flags=re.MULTILINE))
    expected = {kind: f"{a} | {b} | {c}" for kind, (_, a, b, c) in BUDGET.items()}
    assert expected == {kind: rows.get(kind) for kind in BUDGET}
