"""Tests for the runs a result asks for: Retry-After postpones, a bad first result is confirmed, a check that turns
bad has its root checks run early."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

import probes
from monitor.core.config import Config
from monitor.core.results import Outcome, ProbeResult
from monitor.metrics import Metrics
from monitor.runner import Runner
from monitor.schedule import MonotonicScheduler
from monitor.state import State
from probes.deps import Deps, build_deps


class Script:
    """A probe that answers, per check, the next result of a scripted list (then repeats the last one)."""

    def __init__(self, **answers: list[ProbeResult]) -> None:
        self.answers = answers

    async def __call__(self, check: Any, deps: Deps, deadline: float) -> ProbeResult:
        queue = self.answers.get(check.name) or [ProbeResult(Outcome.OK, "fine")]
        return queue.pop(0) if len(queue) > 1 else queue[0]


def _config(checks: list[dict[str, Any]], *, targets: dict[str, Any] | None = None) -> Config:
    return Config.model_validate({
        "targets": targets or {"t": {"base_url": "http://127.0.0.1:9"}},
        "defaults": {"interval": "60s", "timeout": "1s"},
        "checks": [{"kind": "http", "target": "t", **c} for c in checks],
        "alerts": {"confirm_delay": "2s"},
    })


@pytest.fixture
async def scheduler() -> AsyncIterator[MonotonicScheduler]:
    """A started, paused scheduler: jobs are planned but never fire, so next run times can be read."""
    sched = MonotonicScheduler()
    yield sched
    if sched.running:
        sched.shutdown(wait=False)


@pytest.fixture
async def make_runner(scheduler: MonotonicScheduler) -> AsyncIterator[Any]:
    made: list[Deps] = []

    def make(config: Config, script: Script) -> Runner:
        deps = build_deps(config)
        made.append(deps)
        runner = Runner(config, deps, Metrics(process_metrics=False), State(deps.clock.monotonic),
                        registry={"http": dataclasses.replace(probes.REGISTRY["http"], probe=script)})
        runner.start(scheduler)
        if not scheduler.running:
            scheduler.start(paused=True)
        return runner

    yield make
    for deps in made:
        await deps.aclose()


def _due_in(scheduler: MonotonicScheduler, name: str) -> float:
    job = scheduler.get_job(name)
    assert job is not None
    delta: dt.timedelta = job.next_run_time - scheduler.clock.now()
    return delta.total_seconds()


async def test_retry_after_postpones_the_next_run_and_schedules_no_confirmation(
    make_runner: Any, scheduler: MonotonicScheduler
) -> None:
    """After ok, a rate_limited answer with Retry-After 120 s moves the next run to 120 s from now (not the
    interval's 60 s, not a 2 s confirmation)."""
    runner = make_runner(_config([{"name": "c"}]), Script(c=[
        ProbeResult(Outcome.OK, "fine"),
        ProbeResult(Outcome.RATE_LIMITED, "429 with Retry-After: 120", status_code=429, retry_after=120.0),
    ]))
    await runner.run_once(runner.checks["c"])
    await runner.run_once(runner.checks["c"])
    assert 119 < _due_in(scheduler, "c") <= 120
    assert "c" not in runner._extra


async def test_retry_after_is_bounded_by_ten_intervals(make_runner: Any, scheduler: MonotonicScheduler) -> None:
    """A Retry-After of a day postpones a 60 s check by at most 10 intervals (600 s)."""
    runner = make_runner(_config([{"name": "c"}]), Script(c=[
        ProbeResult(Outcome.RATE_LIMITED, "503 with Retry-After", status_code=503, retry_after=86400.0)]))
    await runner.run_once(runner.checks["c"])
    assert 599 < _due_in(scheduler, "c") <= 600


async def test_a_bad_first_result_is_confirmed_soon(make_runner: Any, scheduler: MonotonicScheduler) -> None:
    """A check whose very first result fails (a fault present at start-up) runs again confirm_delay later;
    one whose first result is ok keeps its schedule."""
    runner = make_runner(_config([{"name": "bad"}, {"name": "good"}]), Script(
        bad=[ProbeResult(Outcome.SERVER_ERROR, "500", status_code=500)]))
    good_before = _due_in(scheduler, "good")
    await runner.run_once(runner.checks["bad"])
    await runner.run_once(runner.checks["good"])
    assert 1 < _due_in(scheduler, "bad") <= 2
    assert "confirmation" == runner._extra["bad"]
    assert _due_in(scheduler, "good") == pytest.approx(good_before, abs=0.5)


async def test_a_confirmation_result_asks_for_no_further_confirmation(
    make_runner: Any, scheduler: MonotonicScheduler
) -> None:
    """The confirmation run itself (flagged) does not pull the schedule in again, even when it differs."""
    runner = make_runner(_config([{"name": "c"}]), Script(c=[
        ProbeResult(Outcome.OK, "fine"), ProbeResult(Outcome.SERVER_ERROR, "500", status_code=500)]))
    await runner.run_once(runner.checks["c"], confirmation=True)
    before = _due_in(scheduler, "c")
    await runner.run_once(runner.checks["c"], confirmation=True)
    assert _due_in(scheduler, "c") == pytest.approx(before, abs=0.5)


async def test_a_check_turning_bad_runs_its_roots_early(make_runner: Any, scheduler: MonotonicScheduler) -> None:
    """When a check with depends_on (or on a target with a health_check) turns bad, each root check is due now,
    so the alert engine soon knows whether it is one outage; a check that stays bad asks no more."""
    config = _config(
        [{"name": "health", "path": "/health"}, {"name": "settings", "path": "/s"},
         {"name": "report", "target": "u", "depends_on": ["health"]}],
        targets={"t": {"base_url": "http://127.0.0.1:9", "health_check": "health"},
                 "u": {"base_url": "http://127.0.0.1:10"}},
    )
    runner = make_runner(config, Script(
        settings=[ProbeResult(Outcome.OK, "fine"), ProbeResult(Outcome.SERVER_ERROR, "500", status_code=500)],
        report=[ProbeResult(Outcome.OK, "fine"), ProbeResult(Outcome.TIMEOUT, "timed out")]))
    await runner.run_once(runner.checks["settings"])
    assert _due_in(scheduler, "health") > 1
    await runner.run_once(runner.checks["settings"])
    assert _due_in(scheduler, "health") <= 0.1
    assert "early" == runner._extra["health"]
    assert ("health",) == runner._roots["report"]
    assert ("health",) == runner._roots["settings"]
    assert "health" not in runner._roots


async def test_row6_a_paced_target_confirms_confirm_delay_after_the_failure(
    make_runner: Any, scheduler: MonotonicScheduler
) -> None:
    """Issue 17 row 6: 60 checks on a target with max_rate 40/m are paced (intervals stretched to 112.5 s) and
    their scheduled runs spend everything their share allows; one of them fails: its confirmation is still due
    confirm_delay (2 s) later, from the reserved share, not at the next paced slot 112 s later (before, the
    scheduled runs had emptied the one bucket the confirmation needed)."""
    checks = [{"name": f"c{i:02d}", "path": f"/r/{i}"} for i in range(60)]
    runner = make_runner(_config(checks, targets={"t": {"base_url": "http://127.0.0.1:9", "max_rate": "40/m"}}),
                         Script(c07=[ProbeResult(Outcome.SERVER_ERROR, "500", status_code=500)]))
    assert runner.pacing.interval("c07") > 100  # paced: 112.5 s (100 s before the reserve was 20 %)
    loop = asyncio.get_running_loop()
    for i in range(20):  # scheduled runs, admitted and charged as the scheduler's would be
        assert await runner.run_once(runner.checks[f"c{i + 10:02d}"], admit_by=loop.time() + 5.0) is not None
    assert await runner.run_once(runner.checks["c07"], admit_by=loop.time() + 5.0) is not None
    assert "confirmation" == runner._extra["c07"]
    assert 1 < _due_in(scheduler, "c07") <= 2
