"""Availability and latency over time (monitor/history.py): windows and quantiles from the rollups, judged with
an injected clock over simulated weeks; the size bound per check held; writes only at flush; /status, the page
and `check --format json` carry it."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from monitor.core.results import Outcome, ProbeResult, Result
from monitor.history import LATENCY_BOUNDS, History, quantile, read_over_time
from monitor.page import render_page
from monitor.state import State
from tests.monitor.test_cli import _app, _run
from tests.support.servers import serve_asgi

DAY = 86400.0
START = 1_800_000_000.0 - 1_800_000_000.0 % DAY  # midnight UTC
BYTES_PER_CHECK = 60 * 1024
"""The bound: 300 five-minute rows and at most 721 hour rows a check; 1,000 checks stay under 60 MB."""


class Clock:
    """An injected wall clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _result(check: str, at: float, outcome: Outcome = Outcome.OK, duration: float = 0.02) -> Result:
    return Result(check, "http", ProbeResult(outcome, "m"), duration_s=duration, started_at=at - duration,
                  finished_at=at)


def _simulate(history: History, clock: Clock, checks: list[str], seconds: float, every: float = 300.0,
              bad: set[int] | None = None) -> None:
    """One run per check every `every` seconds for `seconds`, flushing each simulated hour (the daemon flushes
    every minute; the rows are the same, the test is quicker); runs numbered in `bad` fail."""
    end, n = clock.now + seconds, 0
    while clock.now < end:
        for name in checks:
            outcome = Outcome.CONNECTION_ERROR if bad and n in bad else Outcome.OK
            history.record(_result(name, clock.now, outcome))
        n += 1
        clock.now += every
        if clock.now % 3600 < every:
            history.flush()
    history.flush()


def test_quantiles_interpolate_inside_the_bucket_like_histogram_quantile() -> None:
    """p50 of runs all in one bucket is that bucket's middle; past the last bound it is the last bound; no runs
    give None."""
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    counts[10] = 4
    low, high = LATENCY_BOUNDS[9], LATENCY_BOUNDS[10]
    assert pytest.approx(low + (high - low) / 2) == quantile(0.5, counts)
    assert pytest.approx(high) == quantile(1.0, counts)
    tail = [0] * len(LATENCY_BOUNDS) + [3]
    assert LATENCY_BOUNDS[-1] == quantile(0.95, tail)
    assert quantile(0.5, [0] * len(counts)) is None


def test_windows_count_what_happened_in_them(tmp_path: Path) -> None:
    """A check that failed for one hour six days ago and was good otherwise over 8 simulated days: 100 % over
    1 h and 24 h, 1/24 of a day lost over 7 d and 30 d; its latency quantiles fall in the 20 ms bucket; the
    30-day strip shows the bad day, no data before the first day nor yet today."""
    clock = Clock(START)
    history = History(tmp_path, clock)
    runs_per_day = int(DAY / 300)
    bad_day = 2  # of 8: six days before the end
    bad = set(range(bad_day * runs_per_day, bad_day * runs_per_day + 12))
    _simulate(history, clock, ["api"], 8 * DAY, bad=bad)
    summary = history.refresh()["api"]
    assert (12, 1.0) == (summary["1h"]["runs"], summary["1h"]["availability"])
    assert 1.0 == summary["24h"]["availability"]
    assert (7 * runs_per_day, round(1 - 12 / (7 * runs_per_day), 6)) == (summary["7d"]["runs"],
                                                                       summary["7d"]["availability"])
    assert (8 * runs_per_day, round(1 - 12 / (8 * runs_per_day), 6)) == (summary["30d"]["runs"],
                                                                       summary["30d"]["availability"])
    bucket = next(b for b in LATENCY_BOUNDS if b >= 0.02)
    previous = LATENCY_BOUNDS[LATENCY_BOUNDS.index(bucket) - 1]
    assert previous < summary["24h"]["p50_s"] <= summary["24h"]["p95_s"] <= bucket
    days = summary["days"]  # 30 days ending today; the 8 simulated days ended at today's midnight
    assert [None] * 21 == days[:21]
    assert round(1 - 12 / runs_per_day, 6) == days[21 + bad_day]
    assert ([1.0] * 5, None) == (days[24:29], days[29])


def test_rate_limited_runs_are_not_counted(tmp_path: Path) -> None:
    """A rate_limited run says nothing about the target: it is neither good nor bad in the history."""
    clock = Clock(START)
    history = History(tmp_path, clock)
    history.record(_result("api", START, Outcome.OK))
    history.record(_result("api", START + 1, Outcome.RATE_LIMITED))
    summary = history.refresh()["api"]
    assert (1, 1.0) == (summary["1h"]["runs"], summary["1h"]["availability"])


def test_the_probe_path_writes_nothing_until_flush(tmp_path: Path) -> None:
    """record() only counts in memory; one flush writes each touched bucket once (a 5-minute and an hour row per
    check), however many runs went in."""
    clock = Clock(START)
    history = History(tmp_path, clock)
    for i in range(100):
        history.record(_result("api", START + i))
        history.record(_result("web", START + i))
    db = sqlite3.connect(tmp_path / "alerts.sqlite3")
    assert 0 == db.execute("SELECT count(*) FROM history_5m").fetchone()[0]
    assert 4 == history.flush()
    assert (2, 200) == db.execute("SELECT count(*), sum(runs) FROM history_5m").fetchone()


def test_a_month_stays_within_the_size_bound(tmp_path: Path) -> None:
    """Three checks at one run a minute for 32 simulated days: 5-minute rows only for the last 25 h, hour rows for
    the last 30 days and an hour, and the tables under BYTES_PER_CHECK a check (the README's bound for 1,000
    checks is this times 1,000). A restart (a new History on the same file) reads the same summary."""
    clock = Clock(START)
    history = History(tmp_path, clock)
    checks = ["a", "b", "c"]
    _simulate(history, clock, checks, 32 * DAY, every=60.0)
    db = sqlite3.connect(tmp_path / "alerts.sqlite3")
    fine = db.execute("SELECT count(*), min(start) FROM history_5m").fetchone()
    coarse = db.execute("SELECT count(*), min(start) FROM history_1h").fetchone()
    assert fine[0] <= 3 * 301
    assert fine[1] >= clock.now - 25 * 3600 - 300
    assert coarse[0] <= 3 * 722
    assert coarse[1] >= clock.now - 30 * DAY - 2 * 3600
    size = history.size_bytes()
    assert size <= BYTES_PER_CHECK * len(checks), size
    before = history.refresh()
    history.close()
    again = History(tmp_path, clock)
    assert before == again.refresh()
    assert 30 * 1440 == before["a"]["30d"]["runs"]


def test_status_and_the_page_carry_the_history(tmp_path: Path) -> None:
    """/status gives each check `over_time` from the history; the page shows the windows and a 30-day strip."""
    clock = Clock(START)
    history = History(tmp_path, clock)
    _simulate(history, clock, ["api"], 2 * DAY, bad={0, 1})
    state = State(lambda: 0.0)
    state.set_checks([("api", "http")], {"api": 300.0})
    state.over_time = history.summary
    assert {"checks"} <= set(state.status([]))
    assert state.status([])["checks"][0]["over_time"] is None  # nothing computed yet: requests never compute
    history.refresh()
    doc = state.status([])
    over = doc["checks"][0]["over_time"]
    assert {"1h", "24h", "7d", "30d", "days", "days_from", "as_of"} == set(over)
    page = render_page(doc, "svc", "ready", now=clock.now)
    assert "1h 100% · 24h 100% · 7d 99.65% · 30d 99.65% · p95 " in page
    assert 'aria-label="availability per day, last 30 days, oldest first"' in page
    assert page.count('title="day ') == 30


@pytest.mark.process
def test_check_json_adds_the_history_when_the_state_dir_has_one(tmp_path: Path) -> None:
    """`pam-monitor check --format json` adds `over_time` to each check from state_dir's history (read only), and
    nothing when there is none."""
    state = tmp_path / "state"
    state.mkdir()
    with serve_asgi(_app()) as base:
        path = tmp_path / "c.yaml"
        path.write_text(textwrap.dedent(f"""\
            state_dir: {state}
            targets:
              backend: {{base_url: "{base}"}}
            checks:
              - {{name: health, kind: http, target: backend, path: /health}}
            """))
        without = json.loads(_run("check", "--config", str(path), "--format", "json", cwd=tmp_path).stdout)
        import time

        history = History(state, time.time)
        history.record(_result("health", time.time() - 60))
        history.close()
        with_history = json.loads(_run("check", "--config", str(path), "--format", "json", cwd=tmp_path).stdout)
    assert "over_time" not in without["checks"][0]
    assert (1, 1.0) == (with_history["checks"][0]["over_time"]["1h"]["runs"],
                        with_history["checks"][0]["over_time"]["1h"]["availability"])
    assert read_over_time(tmp_path / "nowhere", ["health"], time.time) is None
