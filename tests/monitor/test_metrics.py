"""Tests for monitor.metrics: default series at 0 from start-up, opt-in detail, values, promtool-valid exposition."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest

from monitor.core.results import HttpFacts, Outcome, ProbeResult, Result, TlsFacts
from monitor.metrics import Metrics

FACTS = HttpFacts(phases={"resolve": 0.001, "connect": 0.002, "tls": 0.0, "processing": 0.03, "transfer": 0.004},
                  version=1.1, content_length=20, dns_lookup_s=0.001)


def _result(check: str, outcome: Outcome, duration: float = 0.2, **kw: object) -> Result:
    return Result(check=check, kind=str(kw.pop("kind", "http")), outcome=outcome, message="m", duration_s=duration,
                  started_at=1000.0, finished_at=1000.0 + duration, **kw)  # type: ignore[arg-type]


def _declared(m: Metrics) -> None:
    m.set_checks([
        ("health", "http", (Outcome.OK, Outcome.SERVER_ERROR, Outcome.TIMEOUT), (), (), True),
        ("db_roundtrip", "db", (Outcome.OK, Outcome.TABLE_MISSING), ("user_settings", "auth.users"),
         ("connect", "query"), False),
    ])


def _samples(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = value
    return out


def test_every_default_series_exists_at_zero_before_the_first_run() -> None:
    """Before any run, the default per-check, per-table and daemon-wide series all read 0 (not absent); outcome
    counters and the last outcome do not exist yet, and the detail families are not rendered unless asked for."""
    m = Metrics(process_metrics=False)
    _declared(m)
    s = _samples(m.render().decode())
    assert "0" == s['probe_success{check="health",kind="http"}']
    assert "0.0" == s['pam_monitor_check_last_run_timestamp_seconds{check="health",kind="http"}']
    assert "0" == s['pam_monitor_db_table_present{check="db_roundtrip",kind="db",table="auth.users"}']
    assert "0" == s['pam_monitor_db_phase_duration_seconds{check="db_roundtrip",kind="db",phase="query"}']
    assert "0.0" == s['pam_monitor_scheduler_skipped_runs_total{reason="max_instances"}']
    assert "1.0" == s['pam_monitor_build_info{version="0.1.0"}']
    assert 'pam_monitor_db_table_present{check="health",kind="http",table="user_settings"}' not in s
    made_on_first_run = ("pam_monitor_check_results_total", "pam_monitor_check_last_outcome",
                         "pam_monitor_check_outcome", "pam_monitor_check_duration_seconds")
    assert [] == [name for name in s if name.startswith(made_on_first_run)]


def test_detail_families_exist_at_zero_when_asked_for() -> None:
    """With `detail`, the one-hot outcome gauge (a series per declared outcome) and the duration histogram exist
    at 0 from start-up, as every series did before the budget."""
    m = Metrics(process_metrics=False)
    m.set_checks([("health", "http", (Outcome.OK, Outcome.SERVER_ERROR, Outcome.TIMEOUT), (), (), True)],
                 detail=("outcome_onehot", "duration_histogram"))
    s = _samples(m.render().decode())
    lb = 'check="health",kind="http"'
    assert ["0", "0", "0"] == [s[f'pam_monitor_check_outcome{{{lb},outcome="{o}"}}']
                               for o in ("ok", "server_error", "timeout")]
    assert "0" == s[f"pam_monitor_check_duration_seconds_count{{{lb}}}"]


def test_observe_sets_values_counters_last_outcome_and_transitions() -> None:
    """Results move success and status code; a counter appears at an outcome's first run; the last outcome is one
    series whose label follows the run; transitions count changes."""
    m = Metrics(process_metrics=False)
    _declared(m)
    m.observe(_result("health", Outcome.OK, 0.03, status_code=200), None)
    m.observe(_result("health", Outcome.SERVER_ERROR, 0.3, status_code=500), Outcome.OK)
    s = _samples(m.render().decode())
    lb = 'check="health",kind="http"'
    assert ("0", "500") == (s[f"probe_success{{{lb}}}"], s[f"probe_http_status_code{{{lb}}}"])
    assert ("1", "1") == (s[f'pam_monitor_check_results_total{{{lb},outcome="ok"}}'],
                          s[f'pam_monitor_check_results_total{{{lb},outcome="server_error"}}'])
    assert f'pam_monitor_check_results_total{{{lb},outcome="timeout"}}' not in s
    assert [f'pam_monitor_check_last_outcome{{{lb},outcome="server_error"}}'] == [
        name for name in s if name.startswith("pam_monitor_check_last_outcome{")]
    assert "1" == s[f'pam_monitor_check_last_outcome{{{lb},outcome="server_error"}}']
    assert "1" == s[f'pam_monitor_status_transitions_total{{{lb},from="ok",to="server_error"}}']


def test_detail_histogram_and_one_hot_follow_the_runs() -> None:
    """With both detail families on, the histogram's cumulative buckets and the one-hot gauge follow the runs."""
    m = Metrics(process_metrics=False)
    m.set_checks([("health", "http", (Outcome.OK, Outcome.SERVER_ERROR, Outcome.TIMEOUT), (), (), True)],
                 detail=("outcome_onehot", "duration_histogram"))
    m.observe(_result("health", Outcome.OK, 0.03, status_code=200), None)
    m.observe(_result("health", Outcome.SERVER_ERROR, 0.3, status_code=500), Outcome.OK)
    s = _samples(m.render().decode())
    lb = 'check="health",kind="http"'
    buckets = ("0.01", "0.05", "0.1", "0.25", "0.5", "+Inf")
    assert ["0", "1", "1", "1", "2", "2"] == [
        s[f'pam_monitor_check_duration_seconds_bucket{{{lb},le="{le}"}}'] for le in buckets
    ]
    assert ("0", "1", "0") == (s[f'pam_monitor_check_outcome{{{lb},outcome="ok"}}'],
                               s[f'pam_monitor_check_outcome{{{lb},outcome="server_error"}}'],
                               s[f'pam_monitor_check_outcome{{{lb},outcome="timeout"}}'])


def test_a_reload_can_turn_detail_off() -> None:
    """set_checks without detail after one with it: the detail families leave the scrape, the counters stay."""
    m = Metrics(process_metrics=False)
    declared = [("health", "http", (Outcome.OK,), (), (), True)]
    m.set_checks(declared, detail=("outcome_onehot", "duration_histogram"))
    m.observe(_result("health", Outcome.OK), None)
    m.set_checks(declared)
    text = m.render().decode()
    assert "pam_monitor_check_outcome{" not in text
    assert "pam_monitor_check_duration_seconds" not in text
    assert 'pam_monitor_check_results_total{check="health",kind="http",outcome="ok"} 1' in text


def test_durations_are_written_to_the_microsecond() -> None:
    """Durations and phases are rounded to the microsecond and the last-run time to the millisecond, so a sample
    is not 17 digits of noise (they were a tenth of a scrape)."""
    m = Metrics(process_metrics=False)
    _declared(m)
    facts = dataclasses.replace(FACTS, phases={**FACTS.phases, "connect": 0.00212345678912}, dns_lookup_s=1.23456789e-4)
    observed = ProbeResult(Outcome.OK, "200", status_code=200, http=facts)
    m.observe(Result("health", "http", observed, duration_s=0.0412345678, started_at=1000.0,
                     finished_at=1795000000.123456789), None)
    s = _samples(m.render().decode())
    lb = 'check="health",kind="http"'
    assert ("0.041235", "0.002123", "0.000123", "1795000000.123") == (
        s[f"probe_duration_seconds{{{lb}}}"], s[f'probe_http_duration_seconds{{{lb},phase="connect"}}'],
        s[f"probe_dns_lookup_time_seconds{{{lb}}}"], s[f"pam_monitor_check_last_run_timestamp_seconds{{{lb}}}"])


def test_tables_keep_last_known_value_when_not_reported() -> None:
    """A run that reports tables sets them; a run that never reached them (db down) keeps the last known value."""
    m = Metrics(process_metrics=False)
    _declared(m)
    m.observe(_result("db_roundtrip", Outcome.TABLE_MISSING, kind="db",
                      tables={"user_settings": False, "auth.users": True}), None)
    m.observe(_result("db_roundtrip", Outcome.CONNECTION_ERROR, kind="db"), Outcome.TABLE_MISSING)
    s = _samples(m.render().decode())
    lb = 'check="db_roundtrip",kind="db"'
    assert ("0", "1") == (s[f'pam_monitor_db_table_present{{{lb},table="user_settings"}}'],
                          s[f'pam_monitor_db_table_present{{{lb},table="auth.users"}}'])


def test_reload_keeps_series_of_surviving_checks_and_drops_removed_ones() -> None:
    """set_checks again: a check that stays keeps its counters; a removed one disappears from /metrics."""
    m = Metrics(process_metrics=False)
    _declared(m)
    m.observe(_result("health", Outcome.OK), None)
    m.set_checks([("health", "http", (Outcome.OK,), (), (), True), ("new", "http", (Outcome.OK,), (), (), True)])
    text = m.render().decode()
    assert 'pam_monitor_check_results_total{check="health",kind="http",outcome="ok"} 1' in text
    assert 'check="db_roundtrip"' not in text
    assert 'probe_success{check="new",kind="http"} 0' in text


def _http_result(check: str, facts: HttpFacts | None) -> Result:
    observed = ProbeResult(Outcome.OK, "200 after 0.04 s", status_code=200, http=facts)
    return Result(check, "http", observed, duration_s=0.04, started_at=1000.0, finished_at=1000.04)


def test_http_series_exist_at_zero_for_http_kinds_only() -> None:
    """Before any run an http check has blackbox_exporter's HTTP series at 0 (every phase); a db check has none."""
    m = Metrics(process_metrics=False)
    _declared(m)
    s = _samples(m.render().decode())
    lb = 'check="health",kind="http"'
    assert [0.0] * 5 == [float(s[f'probe_http_duration_seconds{{{lb},phase="{p}"}}'])
                         for p in ("resolve", "connect", "tls", "processing", "transfer")]
    assert (0.0, 0.0, 0.0) == (float(s[f"probe_http_version{{{lb}}}"]), float(s[f"probe_http_content_length{{{lb}}}"]),
                               float(s[f"probe_dns_lookup_time_seconds{{{lb}}}"]))
    new_families = ("probe_http_duration_seconds", "probe_http_version", "probe_http_content_length", "probe_dns")
    assert [] == [name for name in s if 'check="db_roundtrip"' in name and name.startswith(new_families)]


def test_http_series_follow_the_last_run() -> None:
    """A run's HTTP facts set the phase, version, content-length and DNS series; a later run that sent nothing
    (no facts) reads as no answer, not as the previous run's figures."""
    m = Metrics(process_metrics=False)
    _declared(m)
    lb = 'check="health",kind="http"'
    m.observe(_http_result("health", FACTS), None)
    s = _samples(m.render().decode())
    assert (0.03, 1.1, 20.0, 0.001) == (
        float(s[f'probe_http_duration_seconds{{{lb},phase="processing"}}']), float(s[f"probe_http_version{{{lb}}}"]),
        float(s[f"probe_http_content_length{{{lb}}}"]), float(s[f"probe_dns_lookup_time_seconds{{{lb}}}"]))
    m.observe(_http_result("health", None), Outcome.OK)
    s = _samples(m.render().decode())
    assert (0.0, 0.0, 0.0) == (float(s[f'probe_http_duration_seconds{{{lb},phase="processing"}}']),
                               float(s[f"probe_http_version{{{lb}}}"]), float(s[f"probe_http_content_length{{{lb}}}"]))


def test_partial_http_facts_render_every_phase() -> None:
    """HTTP facts that name only some phases still render all five (the missing ones at 0), never break a scrape."""
    m = Metrics(process_metrics=False)
    _declared(m)
    m.observe(_http_result("health", HttpFacts(phases={"connect": 0.5}, version=1.1)), None)
    s = _samples(m.render().decode())
    lb = 'check="health",kind="http"'
    assert [0.0, 0.5, 0.0, 0.0, 0.0] == [float(s[f'probe_http_duration_seconds{{{lb},phase="{p}"}}'])
                                         for p in ("resolve", "connect", "tls", "processing", "transfer")]


@pytest.mark.process
def test_promtool_accepts_the_exposition() -> None:
    """`promtool check metrics` (Debian's prometheus package) finds no problem in a populated scrape, TLS series
    included."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install prometheus (the CI script installs it)")
    m = Metrics()
    _declared(m)
    m.set_checks([("health", "http", (Outcome.OK, Outcome.TIMEOUT), (), (), True)], detail=("outcome_onehot",
                                                                                    "duration_histogram"))
    m.observe(_result("health", Outcome.TIMEOUT), None)
    m.observe(_result("health", Outcome.OK), Outcome.TIMEOUT)
    tls = TlsFacts("TLSv1.3", 1.8e9, "CN=a", "CN=b", earliest_expiry=1.7e9, chain_expiry=1.7e9)
    m.observe(_http_result("health", dataclasses.replace(FACTS, tls=tls)), Outcome.OK)
    assert b'probe_tls_version_info{check="health",kind="http",version="TLS 1.3"} 1' in m.render()
    done = subprocess.run([promtool, "check", "metrics"], input=m.render(), capture_output=True, timeout=60)
    assert (0, b"") == (done.returncode, done.stdout + done.stderr)
