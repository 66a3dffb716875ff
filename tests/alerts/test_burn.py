"""ErrorBudgetBurn (alerts/judge/burn.py) over simulated weeks with an injected clock: steady error rates against a
99.9 % objective page (or stay silent) when the SRE workbook says they should. Time to page is asserted against the
workbook's formula `factor x (1 - objective) / error rate x long window` (the error ratio over the long window
has to climb past the threshold; the short one is past it at once). The scenarios drive the real counts
(`Tracker`) and the real state machine (`alerts.lifecycle.machine.step` with the rule's policy); the engine tests below
feed it real results. `python -m tests.alerts.test_burn` prints the time-to-page table of the README."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prometheus_client

from alerts.judge import burn
from alerts.lifecycle.machine import AlertState, step
from alerts.model import Event
from monitor.core.config import Config
from monitor.core.config.slo import slo_specs
from monitor.core.results import Outcome, ProbeResult, Result
from monitor.history import History
from tests.support.alerting import Recorder, make_config, make_engine, target_alerts
from tests.support.clock import T0, FakeClock
from tests.support.poll import until_async
from tests.support.servers import serve_asgi

MIN, HOUR, DAY = 60.0, 3600.0, 86400.0
ALLOWED = 0.001
CRIT_1H, CRIT_6H, TICKET = "window=1h/severity=critical", "window=6h/severity=critical", "window=3d/severity=warning"


def _config(tmp_path: Path | None = None, **root: object) -> Config:
    checks = [{"name": "api", "kind": "http", "target": "backend", "path": "/health",
               "slo": {"objective": "99.9%", "window": "30d"}}]
    return make_config(tmp_path, checks=checks, **root)  # type: ignore[arg-type]


def workbook(factor: float, rate: float, long: float) -> float:
    """Seconds a steady error `rate` takes to page a burn alert of `factor` over `long` (the workbook's time to
    detect, for a long window that was clean before)."""
    return factor * ALLOWED / rate * long


@dataclass
class Scenario:
    """A steady stream of runs (`per_min` a minute, one judgement every `every` s) whose error rate follows
    `rate(t)` (t: seconds since the burn began); each alert's firing and resolving times are recorded."""

    tracker: burn.Tracker
    now: float = T0
    per_min: int = 1000
    every: float = 15.0
    states: dict[str, AlertState] = field(default_factory=dict)
    fired: dict[str, list[float]] = field(default_factory=dict)
    resolved: dict[str, list[float]] = field(default_factory=dict)
    _owed: float = 0.0

    def run(self, seconds: float, rate: Callable[[float], float], since: float = T0) -> None:
        policy = burn.policy(self.tracker._config, silenced=False)
        runs = round(self.per_min * self.every / MIN)
        for _ in range(math.ceil(seconds / self.every)):
            self.now += self.every
            self._owed += runs * rate(self.now - since)
            bad = int(self._owed)
            self._owed -= bad
            self.tracker.count("api", self.now - 1, runs, bad)
            for obs in self.tracker.judge(self.now):
                short = obs.key.removeprefix("ErrorBudgetBurn/slo=api/")
                state = self.states.get(short, AlertState(obs.key, obs.alertname, obs.check))
                new, actions = step(state, obs, self.now, policy)
                self.states[short] = new
                for action in actions:
                    into = {Event.FIRING: self.fired, Event.RESOLVED: self.resolved}.get(action.event)
                    if into is not None:  # (reminders every repeat_interval are neither)
                        into.setdefault(short, []).append(self.now - since)


def _warm(per_min: int = 1000, every: float = 15.0, tracker: burn.Tracker | None = None) -> Scenario:
    """Three clean days, so every window is full before the burn begins at `T0 + 3d`."""
    s = Scenario(tracker or burn.Tracker(_config()), per_min=per_min, every=every)
    s.run(3 * DAY, lambda t: 0.0)
    assert {} == s.fired
    return s


def _near(measured: float, expected: float, slack: float) -> bool:
    return abs(measured - expected) <= slack


def test_a_steady_burn_at_the_budget_rate_never_pages_for_two_weeks() -> None:
    """0.1 % errors against 99.9 % is a 1x burn: the budget lasts exactly its window. Over two simulated weeks no
    critical alert fires (1x is far from 6x and 14.4x); over a week at 0.05 % (0.5x) nothing fires at all, not
    even the ticket."""
    s = _warm(every=60.0)
    start = s.now
    s.run(14 * DAY, lambda t: 0.001, since=start)
    assert CRIT_1H not in s.fired
    assert CRIT_6H not in s.fired
    half = _warm(every=60.0)
    half.run(7 * DAY, lambda t: 0.0005, since=half.now)
    assert {} == half.fired


def test_a_20x_burn_pages_on_the_1h_pair_in_the_workbooks_time_and_resolves_when_the_5m_burn_drops() -> None:
    """2 % errors (20x) page on the 1 h / 5 m pair after 14.4 x 0.1 % / 2 % of an hour (43.2 min, the
    workbook's time to detect; within a minute, the counts' resolution); once the errors stop the alert resolves
    when the 5 m burn falls under 14.4x (after 1.4 min of clean runs), while the 1 h burn is still above it."""
    s = _warm()
    start = s.now
    s.run(50 * MIN, lambda t: 0.02, since=start)
    expected = workbook(14.4, 0.02, HOUR)
    assert [CRIT_1H] == list(s.fired), s.fired
    assert _near(s.fired[CRIT_1H][0], expected, MIN), (s.fired[CRIT_1H][0], expected)
    stop = s.now
    s.run(6 * MIN, lambda t: 0.0, since=start)
    assert CRIT_1H in s.resolved
    back = s.resolved[CRIT_1H][0] - (stop - start)
    assert 1 * MIN <= back <= 2.5 * MIN, back
    spec = slo_specs(s.tracker._config)[0]
    long = s.tracker.burn(spec, start + s.resolved[CRIT_1H][0], HOUR)
    assert long is not None
    assert long.rate > 14.4, "the short window resolved it, the long one was still burning"


def test_a_total_outage_pages_within_a_minute() -> None:
    """100 % errors page on the 1 h / 5 m pair after 0.864 min (the workbook's 52 s) within the counts' minute."""
    s = _warm()
    start = s.now
    s.run(5 * MIN, lambda t: 1.0, since=start)
    assert _near(s.fired[CRIT_1H][0], workbook(14.4, 1.0, HOUR), MIN)


def test_a_7x_burn_pages_on_the_6h_pair_only_then_raises_the_ticket() -> None:
    """0.7 % errors (7x) never page on the 1 h pair (7 < 14.4); the 6 h / 30 m pair pages after 6/7 of 6 h
    (5.14 h), and the 3 d ticket follows after 1/7 of 3 days (10.3 h), both within a few minutes."""
    s = _warm(every=30.0)
    start = s.now
    s.run(11 * HOUR, lambda t: 0.007, since=start)
    assert CRIT_1H not in s.fired
    assert _near(s.fired[CRIT_6H][0], workbook(6, 0.007, 6 * HOUR), 2 * MIN), s.fired[CRIT_6H][0] / HOUR
    assert _near(s.fired[TICKET][0], workbook(1, 0.007, 3 * DAY), 5 * MIN), s.fired[TICKET][0] / HOUR
    assert 1 == len(s.fired[CRIT_6H])
    assert CRIT_6H not in s.resolved


def test_a_1_5x_burn_raises_only_the_ticket_after_two_days() -> None:
    """0.15 % errors (1.5x) raise the 3 d / 6 h ticket (warning) after 1/1.5 of 3 days (48 h) and never page."""
    s = _warm(every=60.0)
    start = s.now
    s.run(3 * DAY, lambda t: 0.0015, since=start)
    assert [TICKET] == list(s.fired)
    assert _near(s.fired[TICKET][0], workbook(1, 0.0015, 3 * DAY), 10 * MIN), s.fired[TICKET][0] / HOUR
    assert "warning" == s.states[TICKET].labels["severity"]


def _result(at: float, outcome: Outcome) -> Result:
    return Result("api", "http", ProbeResult(outcome, "m"), duration_s=0.02, started_at=at - 0.02, finished_at=at)


class Recorded:
    """A Scenario whose runs also go into a real History, one Result each (the daemon's record path), flushed
    every simulated hour; `restart` is a new tracker seeded from the history as the daemon does on start."""

    def __init__(self, tmp_path: Path, per_min: int, every: float, start: float) -> None:
        self.clock = FakeClock()
        self.history = History(tmp_path, self.clock.time)
        self.s = Scenario(burn.Tracker(_config()), per_min=per_min, every=every)
        self.start = start
        self._owed = 0.0

    def feed(self, seconds: float, rate: float) -> None:
        s = self.s
        for _ in range(int(seconds / s.every)):
            s.run(s.every, lambda t: rate, since=self.start)
            for k in range(round(s.per_min * s.every / MIN)):
                self._owed += rate
                bad = self._owed >= 1
                self._owed -= 1 if bad else 0
                self.history.record(_result(s.now - 1 - k * 0.01, Outcome.CONNECTION_ERROR if bad else Outcome.OK))
            if int(s.now) % 3600 == 0:
                self.clock.now = s.now
                self.history.flush()

    def restart(self, seeded: bool) -> tuple[Scenario, list[tuple[str, float, float, int, int]]]:
        self.clock.now = self.s.now
        self.history.flush()
        rows = self.history.buckets(["api"], self.s.now - 3 * DAY)
        again = Scenario(burn.Tracker(_config()), now=self.s.now, per_min=self.s.per_min, every=self.s.every,
                         _owed=self.s._owed)  # the same runs go on: the restart changes only what is known
        if seeded:
            assert len(rows) == again.tracker.seed(rows, self.s.now)
        return again, rows


def test_a_restart_keeps_the_long_windows_from_the_history(tmp_path: Path) -> None:
    """A 7x burn with a restart 2 h into it: the counts restored from the history (its 5-minute buckets) keep the
    6 h window, so the 6 h / 30 m page still comes at the workbook's 5.14 h after the burn began (within the
    5-minute buckets' resolution). The control: a restart without the history sees only the runs since, all at
    0.7 % (over 6x), and would page within half an hour of the restart: the restored window is what stops it."""
    run = Recorded(tmp_path, per_min=100, every=30.0, start=T0 + 7 * HOUR)
    run.feed(7 * HOUR, 0.0)
    run.feed(2 * HOUR, 0.007)
    assert CRIT_1H not in run.s.fired
    assert CRIT_6H not in run.s.fired
    restarted, rows = run.restart(seeded=True)
    assert {300.0} == {row[2] for row in rows}
    restarted.run(4 * HOUR, lambda t: 0.007, since=run.start)
    assert CRIT_1H not in restarted.fired
    assert _near(restarted.fired[CRIT_6H][0], workbook(6, 0.007, 6 * HOUR), 6 * MIN), restarted.fired[CRIT_6H][0]
    blank, _ = run.restart(seeded=False)
    blank.run(4 * HOUR, lambda t: 0.007, since=run.start)
    assert blank.fired[CRIT_6H][0] - 2 * HOUR < 31 * MIN
    run.history.close()


def test_a_restart_keeps_the_3_day_window_from_hour_and_5_minute_buckets(tmp_path: Path) -> None:
    """A 1.5x burn after 12 clean hours, with a restart 18 h into it: the 3 d window comes back from the hour
    buckets (older than a day) and the 5-minute ones, so the ticket comes when the 3 d ratio passes 1x, 24 h
    after the burn began (0.15 % x t / (12 h + t) > 0.1 %), not before; no critical alert. The control without
    the history raises the ticket within minutes of the restart."""
    run = Recorded(tmp_path, per_min=200, every=60.0, start=T0 + 12 * HOUR)
    run.feed(12 * HOUR, 0.0)
    run.feed(18 * HOUR, 0.0015)
    assert {} == run.s.fired
    restarted, rows = run.restart(seeded=True)
    blank, _ = run.restart(seeded=False)
    assert {300.0, 3600.0} == {row[2] for row in rows}
    restarted.run(10 * HOUR, lambda t: 0.0015, since=run.start)
    run.s.run(10 * HOUR, lambda t: 0.0015, since=run.start)  # the same runs without a restart
    assert [TICKET] == list(restarted.fired)
    # The ratio crosses 1x slowly here (one bad run in 435,000 is ~10 minutes), hence the margin around 24 h.
    assert _near(restarted.fired[TICKET][0], 24 * HOUR, 20 * MIN), restarted.fired[TICKET][0] / HOUR
    assert _near(restarted.fired[TICKET][0], run.s.fired[TICKET][0], 2 * MIN)
    blank.run(10 * HOUR, lambda t: 0.0015, since=run.start)
    assert blank.fired[TICKET][0] - 18 * HOUR < 5 * MIN
    run.history.close()


def test_the_ring_drops_what_is_older_than_its_window_and_rate_limited_runs() -> None:
    """The counts hold the longest window's minutes and no more (8 bytes a minute: 34.6 KB an SLO for the default
    3-day ticket); a run older than the ring is dropped; `rate_limited` runs count neither way."""
    tracker = burn.Tracker(_config())
    assert 8 * 4320 == tracker.memory_bytes()
    spec = slo_specs(tracker._config)[0]
    tracker.record(_result(T0, Outcome.RATE_LIMITED))
    assert tracker.burn(spec, T0, HOUR) is None
    tracker.record(_result(T0, Outcome.SERVER_ERROR))
    tracker.record(_result(T0 - 4 * DAY, Outcome.SERVER_ERROR))  # older than 3 days: dropped
    tracker.record(_result(T0 + 1, Outcome.OK))
    got = tracker.burn(spec, T0 + 1, 3 * DAY)
    assert got is not None
    assert (2, 1) == (got.runs, got.bad)
    assert tracker.burn(spec, T0 + 3 * DAY + MIN, 3 * DAY) is None  # every minute of it has left the window


def _burns(recorder: Recorder) -> list[dict[str, Any]]:
    """The ErrorBudgetBurn alerts the webhook got, in order (the check's own EndpointDown goes there too)."""
    return [a for body in recorder.bodies("/hook") for a in body["alerts"]
            if a["labels"]["alertname"] == "ErrorBudgetBurn"]


def _feed(engine: object, at: float, runs: int, bad: int, outcome: Outcome = Outcome.SERVER_ERROR) -> None:
    for k in range(runs):
        engine.observe(_result(at + k * 0.001, outcome if k < bad else Outcome.OK))  # type: ignore[attr-defined]


async def test_the_engine_pages_from_real_results_through_its_sinks_and_resolves(tmp_path: Path) -> None:
    """Real results through AlertEngine.observe: an hour at 2 % errors after three clean days (restored from
    history buckets) fires ErrorBudgetBurn at
    the judgement after the 1 h burn passes 14.4x; the webhook gets labels alertname, service, severity, slo,
    window and the external labels, and annotations with both burn rates, the objective, the budget left and the
    checks; clean runs resolve it, and the resolution is delivered too."""
    recorder = Recorder()
    clock = FakeClock()
    with serve_asgi(recorder.app()) as url:
        config = _config(tmp_path, sinks=[{"kind": "webhook", "url": f"{url}/hook"}])
        async with make_engine(config, prometheus_client.CollectorRegistry(), clock) as engine:
            # Three clean days from the history (100 runs a minute), as the daemon restores them on start.
            clean = [("api", clock.now - 3 * DAY + k * 300, 300.0, 500, 500) for k in range(3 * 288)]
            assert len(clean) == engine.slo_history(clean, lambda slo: 0.42)
            fired_at = None
            for minute in range(60):
                _feed(engine, clock.now, 100, 2)
                clock.advance(MIN)
                engine.judge_burn()
                if fired_at is None and any(a["alertname"] == "ErrorBudgetBurn" for a in target_alerts(engine)):
                    fired_at = minute + 1
            assert fired_at is not None
            assert _near(fired_at * MIN, workbook(14.4, 0.02, HOUR), 1.5 * MIN), fired_at
            await until_async(lambda: len(_burns(recorder)) >= 1, what="the page")
            for _ in range(5):
                _feed(engine, clock.now, 100, 0)
                clock.advance(MIN)
                engine.judge_burn()
            assert [] == [a for a in target_alerts(engine) if a["alertname"] == "ErrorBudgetBurn"]
            await until_async(lambda: len(_burns(recorder)) >= 2, what="the resolution")
    first, last = _burns(recorder)[0], _burns(recorder)[-1]
    assert {"alertname": "ErrorBudgetBurn", "service": "pam-backend", "severity": "critical", "slo": "api",
            "window": "1h", "env": "test"} == first["labels"]
    notes = first["annotations"]
    assert float(notes["burn_rate_long"]) > 14.4
    assert float(notes["burn_rate_short"]) > 14.4
    assert "99.9% over 30d" == notes["objective"]
    assert "42.0%" == notes["budget_left"]
    assert "api" == notes["checks"]
    assert "resolved" == last["status"]


async def test_maintenance_silences_it_then_it_pages_and_a_removed_slo_resolves_it(tmp_path: Path) -> None:
    """In a global maintenance window the burn fires without notifying anyone (nothing is queued for the webhook,
    like every alert); once the window is over, the next burning judgement pages; a reload that removes the SLO
    resolves it (the resolution is sent); `alerts.rules.ErrorBudgetBurn.enabled: false` turns the rule off."""
    recorder = Recorder()
    clock = FakeClock()
    maintenance = [{"start": "2025-12-31T00:00:00Z", "end": "2026-01-01T01:00:00Z"}]
    with serve_asgi(recorder.app()) as url:
        config = _config(tmp_path, alerts={"maintenance": maintenance},
                         sinks=[{"kind": "webhook", "url": f"{url}/hook"}])
        async with make_engine(config, prometheus_client.CollectorRegistry(), clock) as engine:
            for _ in range(10):
                _feed(engine, clock.now, 10, 10)
                clock.advance(MIN)
                engine.judge_burn()
            # No history: every window holds only these ten bad minutes, so all three pairs burn.
            assert ["1h", "3d", "6h"] == sorted(
                a["labels"]["window"] for a in target_alerts(engine) if a["alertname"] == "ErrorBudgetBurn")
            assert {"firing"} == {a["state"] for a in target_alerts(engine)}
            assert 0 == engine.stats().queued
            clock.advance(HOUR)  # the window is over
            _feed(engine, clock.now, 10, 10)
            engine.judge_burn()
            await until_async(lambda: len(_burns(recorder)) >= 3, what="the pages after the window")
            assert {"firing"} == {a["status"] for a in _burns(recorder)}
            await engine.reload(make_config(tmp_path, sinks=[{"kind": "webhook", "url": f"{url}/hook"}],
                                            checks=[{"name": "api", "kind": "http", "target": "backend",
                                                     "path": "/health"}]))
            assert [] == [a for a in target_alerts(engine) if a["alertname"] == "ErrorBudgetBurn"]
            await until_async(lambda: len(_burns(recorder)) >= 6, what="the resolutions")
    assert ["firing"] * 3 + ["resolved"] * 3 == [a["status"] for a in _burns(recorder)]
    off = _config(alerts={"rules": {"ErrorBudgetBurn": {"enabled": False}}})
    assert not burn.Tracker(off).active


def _table() -> list[tuple[str, str, str, str]]:
    """(error rate, burn, alert, measured time to page) for the README, from the scenarios above."""
    rows = []
    for rate, key in ((1.0, CRIT_1H), (0.02, CRIT_1H), (0.007, CRIT_6H), (0.007, TICKET), (0.0015, TICKET)):
        s = _warm(every=15.0 if rate >= 0.02 else 60.0)
        start = s.now
        s.run(3 * DAY, lambda t, r=rate: r, since=start) if key == TICKET else s.run(6 * HOUR, lambda t, r=rate: r,
                                                                                      since=start)
        got = s.fired[key][0]
        rows.append((f"{rate * 100:g} %", f"{rate / ALLOWED:g}x", key.split("/")[0].removeprefix("window="),
                     f"{got / MIN:.1f} min (workbook {workbook(_pair(key)[0], rate, _pair(key)[1]) / MIN:.1f})"))
    return rows


def _pair(key: str) -> tuple[float, float]:
    return {CRIT_1H: (14.4, HOUR), CRIT_6H: (6.0, 6 * HOUR), TICKET: (1.0, 3 * DAY)}[key]


if __name__ == "__main__":
    for row in _table():
        print("| " + " | ".join(row) + " |")


def test_history_buckets_hold_every_run_once_across_both_tables(tmp_path: Path) -> None:
    """`History.buckets` over 3 days of a history 2 days deep: hour buckets for what is older than a day, 5-minute
    buckets after; their runs add up to every run recorded (none twice, none lost), and a bucket that began
    before `since` but reaches past it is included."""
    clock = FakeClock()
    history = History(tmp_path, clock.time)
    recorded = 0
    for k in range(2 * 288):  # a run every 5 minutes for two days, one in 10 failing
        clock.now = T0 + k * 300 + 7
        history.record(_result(clock.now, Outcome.SERVER_ERROR if k % 10 == 0 else Outcome.OK))
        recorded += 1
    history.flush()
    rows = history.buckets(["api"], clock.now - 3 * DAY)
    assert {300.0, 3600.0} == {row[2] for row in rows}
    assert recorded == sum(row[3] for row in rows)
    assert recorded - 58 == sum(row[4] for row in rows)
    late = history.buckets(["api"], clock.now - 5)  # the latest bucket began 7 s ago, the one before ended 7 s ago
    assert 2 == len(history.buckets(["api"], clock.now - 60))
    assert [(clock.now - 7, 300.0)] == [(row[1], row[2]) for row in late]
    history.close()


def test_the_daemon_and_the_prometheus_rules_share_their_alerts_and_thresholds() -> None:
    """For configured burns (a custom pair and the defaults of a group), `pam-monitor rules` writes one alert per
    burn with the labels the daemon's ErrorBudgetBurn carries, comparing with the very number the daemon
    compares with (`factor * (1 - objective)`, 10 significant digits); a ratio just above it fires in the daemon,
    one just below does not."""
    from monitor.slo import prometheus_rules

    checks = [{"name": "api", "kind": "http", "target": "backend", "path": "/health",
               "slo": {"objective": "99.95%", "window": "7d",
                       "alerts": [{"severity": "warning", "factor": 3, "long": "2h", "short": "10m"}]}},
              {"name": "web", "kind": "http", "target": "backend", "path": "/"}]
    config = make_config(checks=checks, slos={"both": {"checks": ["api", "web"], "objective": "99%"}})
    rules = [r for g in prometheus_rules(config)["groups"] for r in g["rules"] if "alert" in r]
    tracker = burn.Tracker(config)
    daemon: set[tuple[str, str, str]] = set()
    for spec in slo_specs(config):
        for alert in spec.alerts:
            daemon.add((spec.name, tracker._labels(spec, alert)["window"], alert.severity))
            expr = next(r["expr"] for r in rules if r["labels"] == {"severity": alert.severity, "slo": spec.name,
                                                                     "window": tracker._labels(spec, alert)["window"]})
            assert f"({alert.factor:g} * {spec.allowed:.10g})" in expr
    assert daemon == {(r["labels"]["slo"], r["labels"]["window"], r["labels"]["severity"]) for r in rules}
    assert {("api", "2h", "warning"), ("both", "1h", "critical")} <= daemon
    # 3 x 0.0005 = 0.0015: 15,001 bad in 10,000,000 fires, 14,999 does not.
    for bad, fires in ((15_001, True), (14_999, False)):
        t = burn.Tracker(config)
        t.count("api", T0, 10_000_000, bad)
        got = [o for o in t.judge(T0) if o.key.startswith("ErrorBudgetBurn/slo=api/")]
        assert [fires] == [o.signal.name == "BAD" for o in got]


def test_config_refuses_a_rule_severity_and_burns_that_would_be_one_alert() -> None:
    """`alerts.rules.ErrorBudgetBurn.severity` would be ignored (each burn has its own): refused with the field and
    the fix; two burns of one SLO with the same long window and severity are refused (one key, one label set)."""
    from monitor.core.config.root import cross_check

    config = _config(alerts={"rules": {"ErrorBudgetBurn": {"severity": "warning"}}})
    assert ["alerts.rules.ErrorBudgetBurn.severity"] == [where for where, _ in cross_check(config)]
    twice = [{"severity": "critical", "factor": 10, "long": "1h", "short": "5m"},
             {"severity": "critical", "factor": 20, "long": "1h", "short": "2m"}]
    checks = [{"name": "api", "kind": "http", "target": "backend", "path": "/health",
               "slo": {"objective": "99%", "alerts": twice}}]
    problems = cross_check(make_config(checks=checks))
    assert ["checks[0].slo.alerts[1]"] == [where for where, _ in problems]
    assert "same long window and severity" in problems[0][1]


def test_a_group_spread_over_shards_is_left_to_prometheus() -> None:
    """With `--shard`, a group whose checks are partly on another shard is not judged by this daemon (it would
    see part of the runs); a check's own SLO and a group wholly on this shard are."""
    from monitor.core.config.shard import apply_shard, shard_of

    names = [f"c{i}" for i in range(8)]
    checks = [{"name": n, "kind": "http", "target": "backend", "path": "/", "slo": {"objective": "99%"}}
              for n in names]
    mine = [n for n in names if shard_of(n, 2) == 0]
    other = [n for n in names if shard_of(n, 2) == 1]
    assert mine
    assert other
    config = make_config(checks=checks, slos={"spread": {"checks": [mine[0], other[0]], "objective": "99%"},
                                              "local": {"checks": mine, "objective": "99%"}})
    tracker = burn.Tracker(apply_shard(config, 0, 2))
    tracker.count(mine[0], T0, 10, 10)
    judged = {o.key.split("/")[1] for o in tracker.judge(T0)}
    assert {f"slo={mine[0]}", "slo=local"} == judged


async def test_a_checks_own_maintenance_silences_it_only_when_every_check_of_the_slo_is_in_one(
        tmp_path: Path) -> None:
    """A group of two checks burning: with one of them in its own maintenance window the page is queued for the
    sink; with both in theirs nothing is (their own alerts are switched off, so only ErrorBudgetBurn could be)."""
    window = [{"start": "2025-12-31T00:00:00Z", "end": "2026-01-02T00:00:00Z"}]
    quiet = ["EndpointDown", "CheckFailed", "ContractRegression"]
    queued = []
    for silenced in ({"a"}, {"a", "b"}):
        checks = [{"name": n, "kind": "http", "target": "backend", "path": "/", "disable_alerts": quiet,
                   **({"maintenance": window} if n in silenced else {})} for n in ("a", "b")]
        config = make_config(tmp_path / str(len(silenced)), checks=checks,
                             sinks=[{"kind": "webhook", "url": "http://127.0.0.1:1/hook"}],
                             slos={"both": {"checks": ["a", "b"], "objective": "99%"}})
        clock = FakeClock()
        async with make_engine(config, prometheus_client.CollectorRegistry(), clock) as engine:
            for name in ("a", "b"):
                for k in range(10):
                    engine.observe(Result(name, "http", ProbeResult(Outcome.SERVER_ERROR, "m"), duration_s=0.01,
                                          started_at=clock.now + k, finished_at=clock.now + k))
            clock.advance(MIN)
            engine.judge_burn()
            assert {"firing"} == {a["state"] for a in target_alerts(engine) if a["alertname"] == "ErrorBudgetBurn"}
            queued.append(engine.stats().queued)
    assert queued[0] >= 1
    assert 0 == queued[1]
