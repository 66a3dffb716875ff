"""Tests for the saturation rules (monitor/saturation.py, the runner's admission): the monitor's own saturation is a
skipped run, never a target's outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

import probes
from monitor.core.config import Config
from monitor.core.results import Outcome, ProbeResult
from monitor.metrics import Metrics
from monitor.runner import Runner
from monitor.saturation import (
    SPELL_QUIET,
    LoopLag,
    Saturation,
    admission_window,
    shed_lag,
    untrusted_lag,
)
from monitor.schedule import MonotonicScheduler
from monitor.state import State
from probes.deps import Deps, build_deps
from tests.support.servers import serve_asgi
from tests.support.targets import create_target_app


def _config(checks: list[dict[str, Any]], *, max_in_flight: int = 16, targets: dict[str, Any] | None = None,
            confirm: str = "2s") -> Config:
    return Config.model_validate({
        "http": {"max_in_flight": max_in_flight},
        "targets": targets or {"t": {"base_url": "http://127.0.0.1:9"}},
        "defaults": {"interval": "10s", "timeout": "1s"},
        "checks": [{"kind": "http", "target": "t", **c} for c in checks],
        "alerts": {"confirm_delay": confirm},
    })


def _runner(config: Config, probe: Any = None, *, saturation: Saturation | None = None) -> Runner:
    registry = dict(probes.REGISTRY)
    if probe is not None:
        registry["http"] = dataclasses.replace(probes.REGISTRY["http"], probe=probe)
    metrics = Metrics(process_metrics=False)
    deps = build_deps(config)
    return Runner(config, deps, metrics, State(deps.clock.monotonic), registry=registry,
                  saturation=saturation or Saturation(metrics))


def _skipped(runner: Runner, reason: str = "saturated") -> float:
    value = runner.metrics.skipped.labels(reason)._value.get()
    return float(value)


# ---------------------------------------------------------------------------------------------- thresholds


def test_thresholds_are_what_the_module_states() -> None:
    """Untrusted lag is 5 % of the timeout, at least 5 ms; extra runs are shed at half; the admission window is
    80 % of what the interval leaves after the timeout and the hard stop, at least 10 % of interval - timeout."""
    assert pytest.approx((0.005, 0.005, 0.05, 0.25)) == (
        untrusted_lag(0.05), untrusted_lag(0.1), untrusted_lag(1.0), untrusted_lag(5.0))
    assert (0.05, 0.025) == (shed_lag(1.0, extra=False), shed_lag(1.0, extra=True))
    assert 0.6 == pytest.approx(admission_window(2.0, 1.0))
    assert 19.8 == pytest.approx(admission_window(30.0, 5.0))
    assert 0.01 == pytest.approx(admission_window(1.0, 0.9))


# ---------------------------------------------------------------------------------------------- admission


async def test_the_deadline_starts_at_admission_so_a_slot_wait_is_never_a_timeout() -> None:
    """With one slot held for 0.6 s, a run with a 0.3 s timeout waits for it (no admission deadline, as in
    `pam-monitor check`) and still gets its whole timeout on the wire: ok, with a duration of its own probe."""
    async def probe(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        loop = asyncio.get_running_loop()
        work = 0.6 if check.name == "holder" else 0.1
        if loop.time() + work > deadline:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            return ProbeResult(Outcome.TIMEOUT, "timed out waiting for the response")
        await asyncio.sleep(work)
        return ProbeResult(Outcome.OK, "fine")

    runner = _runner(_config([{"name": "holder"}, {"name": "waiter", "timeout": "300ms"}], max_in_flight=1), probe)
    holder = asyncio.create_task(runner.run_once(runner.checks["holder"]))
    await asyncio.sleep(0.01)
    waited = await runner.run_once(runner.checks["waiter"])
    await holder
    await runner.deps.aclose()
    assert waited is not None
    assert Outcome.OK == waited.outcome
    # Counted from admission (0.1 s of work), not from the start of its ~0.6 s wait in line (that would be >= 0.7 s):
    # the bound sits between the two, leaving a busy machine 0.45 s of slack.
    assert 0.1 <= waited.duration_s < 0.55


async def test_a_run_not_admitted_in_its_window_is_skipped_as_saturated_with_no_result() -> None:
    """A run still waiting for its target's slot when its admission window closes is a skipped run: no result,
    no state, no metric of the check; only pam_monitor_scheduler_skipped_runs_total{reason="saturated"}."""
    release = asyncio.Event()

    async def probe(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        if check.name == "holder":
            await release.wait()
        return ProbeResult(Outcome.OK, "fine")

    runner = _runner(_config([{"name": "holder"}, {"name": "late"}], max_in_flight=1), probe)
    holder = asyncio.create_task(runner.run_once(runner.checks["holder"]))
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    with capture_logs() as logs:
        skipped = await runner.run_once(runner.checks["late"], admit_by=loop.time() + 0.05)
    release.set()
    await holder
    await runner.deps.aclose()
    assert skipped is None
    assert 1.0 == _skipped(runner)
    assert "late" not in runner.state.results
    exposition = runner.metrics.render().decode()
    assert 'pam_monitor_check_results_total{check="late"' not in exposition  # no outcome counted, not even one
    assert 'pam_monitor_check_last_run_timestamp_seconds{check="late",kind="http"} 0.0\n' in exposition
    assert ["scheduler.saturated"] == [e["event"] for e in logs if e["log_level"] == "warning"]


async def test_a_hanging_target_holds_only_its_own_slots() -> None:
    """While a hanging target's runs hold both of its slots, a healthy target's checks are ok, and the hanging
    target's extra runs are skipped (saturated) when their window closes: never `timeout` for time not on the
    wire. The holders themselves time out honestly (their requests were on the wire)."""
    with serve_asgi(create_target_app()) as hanging, serve_asgi(create_target_app()) as healthy:
        config = _config(
            [{"name": f"hold{i}", "path": "/hang", "timeout": "600ms"} for i in range(2)]
            + [{"name": "extra", "path": "/hang", "timeout": "300ms"},
               {"name": "fine", "target": "ok", "path": "/respond", "timeout": "500ms"}],
            max_in_flight=2, targets={"t": {"base_url": hanging}, "ok": {"base_url": healthy}},
        )
        runner = _runner(config)
        loop = asyncio.get_running_loop()
        holders = [asyncio.create_task(runner.run_once(runner.checks[f"hold{i}"])) for i in range(2)]
        await asyncio.sleep(0.05)
        assert 0 == runner.admission.slots_for("t").free
        extra = await runner.run_once(runner.checks["extra"], admit_by=loop.time() + 0.2)
        fine = await asyncio.gather(*(runner.run_once(runner.checks["fine"]) for _ in range(3)))
        held = await asyncio.gather(*holders)
        await runner.deps.aclose()
    assert extra is None
    assert [Outcome.OK] * 3 == [r.outcome if r else None for r in fine]
    assert [Outcome.TIMEOUT] * 2 == [r.outcome if r else None for r in held]
    assert 1.0 == _skipped(runner)


# ---------------------------------------------------------------------------------------------- loop lag


async def test_a_timeout_seen_under_loop_lag_is_a_skip_and_without_lag_a_result() -> None:
    """The same `timeout` verdict is recorded on a quiet loop and discarded as skipped (saturated) when the lag
    monitor saw the loop 200 ms late while the run was on the wire (threshold 50 ms for a 1 s timeout)."""
    lag = LoopLag()
    metrics = Metrics(process_metrics=False)
    saturation = Saturation(metrics, lag=lag)

    async def probe(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        if check.name == "lagged":
            lag.record(asyncio.get_running_loop().time(), 0.2)
        return ProbeResult(Outcome.TIMEOUT, "timed out waiting for the response")

    runner = _runner(_config([{"name": "quiet"}, {"name": "lagged"}]), probe, saturation=saturation)
    quiet = await runner.run_once(runner.checks["quiet"])
    lagged = await runner.run_once(runner.checks["lagged"])
    await runner.deps.aclose()
    assert quiet is not None
    assert Outcome.TIMEOUT == quiet.outcome
    assert lagged is None
    assert 1 == saturation.total
    assert "lagged" not in runner.state.results


async def test_a_deadline_noticed_late_discards_the_timeout_even_without_the_monitor() -> None:
    """A probe whose loop was blocked past its deadline (a CPU-bound neighbour) reports `timeout`; the runner
    sees the deadline noticed 150 ms late and discards it, with no lag monitor running at all."""
    async def probe(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time() - 0.01))
        time.sleep(0.16)  # noqa: ASYNC251 - the whole loop is stuck on purpose, as under a CPU-bound neighbour
        return ProbeResult(Outcome.TIMEOUT, "timed out waiting for the response")

    runner = _runner(_config([{"name": "c", "timeout": "200ms"}]), probe)
    assert None is await runner.run_once(runner.checks["c"])
    await runner.deps.aclose()
    assert 1.0 == _skipped(runner)


async def test_an_ok_under_lag_is_kept_and_a_slow_under_lag_is_discarded() -> None:
    """Lag makes a verdict about time untrustworthy (timeout, slow), not an answer that arrived (ok, 500)."""
    lag = LoopLag()
    saturation = Saturation(Metrics(process_metrics=False), lag=lag)
    outcomes = iter([Outcome.OK, Outcome.SERVER_ERROR, Outcome.SLOW])

    async def probe(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        lag.record(asyncio.get_running_loop().time(), 0.3)
        return ProbeResult(next(outcomes), "x")

    runner = _runner(_config([{"name": "c"}]), probe, saturation=saturation)
    got = [await runner.run_once(runner.checks["c"]) for _ in range(3)]
    await runner.deps.aclose()
    assert [Outcome.OK, Outcome.SERVER_ERROR, None] == [r.outcome if r else None for r in got]


async def test_check_mode_runs_an_untrusted_verdict_again_and_finally_says_so() -> None:
    """`pam-monitor check` (run_all) runs a check whose timeout came under lag again; when every attempt lagged,
    it reports the verdict with a sentence saying the monitor itself was too busy to be sure."""
    lag = LoopLag()
    saturation = Saturation(Metrics(process_metrics=False), lag=lag)
    calls = []

    async def probe(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        calls.append(check.name)
        if check.name == "always" or len([c for c in calls if c == "once"]) == 1:
            lag.record(asyncio.get_running_loop().time(), 0.3)
            return ProbeResult(Outcome.TIMEOUT, "timed out waiting for the response")
        return ProbeResult(Outcome.OK, "fine")

    runner = _runner(_config([{"name": "once"}, {"name": "always"}]), probe, saturation=saturation)
    once, always = await runner.run_all()
    await runner.deps.aclose()
    assert (Outcome.OK, Outcome.TIMEOUT) == (once.outcome, always.outcome)
    assert 3 == calls.count("always")
    assert ("timed out waiting for the response (pam-monitor itself was too busy to be sure: a timeout verdict "
            "while the event loop lagged 300 ms)") == always.message


async def test_loop_lag_monitor_measures_a_blocked_loop() -> None:
    """The monitor task sees a loop blocked for 120 ms as a sample of about that lag; sustained lag needs three
    high samples in a row, so one stall alone does not count as sustained."""
    lag = LoopLag(period=0.01)
    lag.start()
    loop = asyncio.get_running_loop()
    before = loop.time()
    await asyncio.sleep(0.05)
    time.sleep(0.12)  # noqa: ASYNC251 - block the loop on purpose: that is what the monitor must see
    await asyncio.sleep(0.03)
    seen = lag.max_since(before)
    await lag.aclose()
    assert 0.1 <= seen < 1.0
    assert lag.sustained() < 0.1


def test_sustained_lag_is_the_smallest_of_the_last_three_samples() -> None:
    """One high sample does not make sustained lag; three do, at the smallest of them."""
    lag = LoopLag()
    for woke, value in enumerate([0.001, 0.3, 0.001]):
        lag.record(float(woke), value)
    assert 0.001 == lag.sustained()
    for woke, value in enumerate([0.2, 0.3, 0.1], start=3):
        lag.record(float(woke), value)
    assert 0.1 == lag.sustained()


# ---------------------------------------------------------------------------------------------- shedding


async def test_shed_order_extra_runs_first_then_regular_runs() -> None:
    """Under a sustained lag of 30 ms (1 s timeout: extra runs shed at 25 ms, regular at 50 ms) a confirmation is
    neither scheduled nor run while a regular run goes ahead; at 60 ms regular runs are shed too."""
    lag = LoopLag()
    saturation = Saturation(Metrics(process_metrics=False), lag=lag)
    ran: list[str] = []

    async def probe(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        ran.append(check.name)
        return ProbeResult(Outcome.OK, "fine")

    runner = _runner(_config([{"name": "a"}, {"name": "b"}], confirm="1s"), probe, saturation=saturation)
    scheduler = MonotonicScheduler()
    runner.start(scheduler)
    scheduler.start(paused=True)
    try:
        for woke in range(3):
            lag.record(float(woke), 0.03)
        before = scheduler.get_job("a").next_run_time
        runner._pull_in("a", "confirmation")
        assert before == scheduler.get_job("a").next_run_time  # not pulled in: extra runs are shed first
        runner._extra["b"] = "confirmation"  # one that was scheduled before the lag rose
        await runner._job("a")
        await runner._job("b")
        assert ["a"] == ran
        for woke in range(3, 6):
            lag.record(float(woke), 0.06)
        await runner._job("a")
        assert ["a"] == ran
        assert 2 == saturation.total
    finally:
        scheduler.shutdown(wait=False)
        await runner.deps.aclose()


async def test_a_run_that_starts_after_its_window_is_skipped_before_it_runs() -> None:
    """A job the scheduler starts later than its admission window (here 0.8 x (10 - 1 - 0.25) = 7 s) is skipped
    without running: lateness is judged on the scheduler's own clock."""
    ran: list[str] = []

    async def probe(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        ran.append(check.name)
        return ProbeResult(Outcome.OK, "fine")

    runner = _runner(_config([{"name": "a"}]), probe)
    scheduler = MonotonicScheduler()
    runner.start(scheduler)
    scheduler.start(paused=True)
    try:
        runner._scheduled_at["a"] = scheduler.clock.timestamp() - 8.0
        await runner._job("a")
        runner._scheduled_at["a"] = scheduler.clock.timestamp() - 1.0
        await runner._job("a")
    finally:
        scheduler.shutdown(wait=False)
        await runner.deps.aclose()
    assert ["a"] == ran
    assert 1.0 == _skipped(runner)


def test_a_spell_is_logged_once_when_it_starts_and_once_when_it_ends() -> None:
    """A thousand skipped runs in one spell log one warning; after SPELL_QUIET seconds without one, one info line
    with the counts by cause."""
    now = [100.0]
    saturation = Saturation(Metrics(process_metrics=False), monotonic=lambda: now[0])
    with capture_logs() as logs:
        for i in range(1000):
            saturation.skipped(f"c{i % 7}", "no request slot in time")
        saturation.tick()
        now[0] += SPELL_QUIET
        saturation.tick()
        saturation.tick()
    assert [("scheduler.saturated", "warning"), ("scheduler.recovered", "info")] == [
        (e["event"], e["log_level"]) for e in logs]
    assert {"saturated: no request slot in time": 1000} == logs[1]["causes"]
    assert 1000 == saturation.total
