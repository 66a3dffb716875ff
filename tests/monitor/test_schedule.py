"""Tests for monitor/schedule.py: the scheduler's now follows monotonic time, so wall-clock steps neither stop probing
nor invent skipped runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import pytest
from apscheduler.schedulers import base as aps_base

import probes
from monitor.core.config import Config
from monitor.core.results import Outcome, ProbeResult, Result
from monitor.metrics import SKIP_REASONS, Metrics
from monitor.runner import Runner
from monitor.schedule import MonotonicScheduler, SchedulerClock, SteadyJobStore, SteadyZone
from monitor.state import State
from probes.deps import Deps, build_deps
from tests.support.poll import until_async


class SteppingWall:
    """A wall clock the test steps like NTP does; monotonic time is the real one."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        """Real time plus the current offset."""
        return time.time() + self.offset

    def monotonic(self) -> float:
        """The real monotonic clock (the event loop's)."""
        return time.monotonic()


class RecordingStore(SteadyJobStore):
    """The scheduler's job store, noting the "now" the scheduler asks it for due jobs with."""

    def __init__(self, clock: SchedulerClock) -> None:
        super().__init__()
        self.clock = clock
        self.asked: list[tuple[float, float]] = []

    def get_due_jobs(self, now: dt.datetime) -> Any:
        """Record (now the scheduler used, the scheduler clock's now), then answer as usual."""
        self.asked.append((self.clock.seconds(now), self.clock.timestamp()))
        return super().get_due_jobs(now)


def test_scheduler_clock_reads_the_wall_once_and_then_follows_monotonic_time() -> None:
    """timestamp() = wall at construction + monotonic elapsed; stepping the wall afterwards changes nothing."""
    wall, mono = [1_000_000.0], [50.0]
    clock = SchedulerClock(wall=lambda: wall[0], monotonic=lambda: mono[0])
    wall[0] -= 3600
    mono[0] += 2.5
    assert 1_000_002.5 == clock.timestamp()
    wall[0] += 7200
    assert 1_000_002.5 == clock.seconds(clock.now())


def test_the_scheduler_zone_makes_datetime_now_the_scheduler_clock() -> None:
    """`datetime.now(zone)` (what APScheduler calls) is the scheduler clock's now, an hour behind the real clock here,
    while APScheduler's module and the real clock are left untouched (nothing of the library is replaced)."""
    clock = SchedulerClock(wall=lambda: time.time() - 3600)
    scheduler = MonotonicScheduler(clock)
    assert scheduler.timezone is clock.zone
    assert aps_base.datetime is dt.datetime
    assert abs(clock.seconds(dt.datetime.now(scheduler.timezone)) - clock.timestamp()) < 0.5
    assert abs(dt.datetime.now(dt.UTC).timestamp() - time.time()) < 0.5


def test_the_zone_follows_a_step_of_the_wall_clock_and_ignores_drift() -> None:
    """The zone's offset is the scheduler clock's lead over the wall clock, re-read only by `refresh` (once per
    wake-up): a sub-millisecond drift leaves it (and so interval arithmetic) unchanged; a step of an hour moves it
    by the hour at the next refresh, and a datetime's scheduler-clock value (what jobs are ordered and compared by)
    does not move at all."""
    wall, mono = [1_000_000.0], [50.0]
    clock = SchedulerClock(wall=lambda: wall[0], monotonic=lambda: mono[0])
    zone = SteadyZone(clock, wall=lambda: wall[0])
    due = clock.at(1_000_010.0)
    assert dt.timedelta(0) == zone.utcoffset(due)
    wall[0] += 0.0004
    assert (False, dt.timedelta(0)) == (zone.refresh(), zone.utcoffset(due))
    wall[0] -= 3600
    assert dt.timedelta(0) == zone.utcoffset(due)  # held still until the next wake-up's refresh
    assert (True, dt.timedelta(seconds=3599.9996)) == (zone.refresh(), zone.utcoffset(due))
    assert 1_000_010.0 == clock.seconds(due)


def test_the_job_store_orders_and_releases_jobs_on_the_scheduler_clock() -> None:
    """SteadyJobStore hands out exactly the jobs due by the scheduler's now, earliest first, after any update, and
    answers the earliest next run; a paused job (no next run) is never due."""
    clock = SchedulerClock(wall=lambda: 1_000_000.0, monotonic=lambda: 0.0)

    class Job:
        def __init__(self, job_id: str, at: float | None) -> None:
            self.id, self.next_run_time = job_id, None if at is None else clock.at(at)

    store = SteadyJobStore()
    a, b, c, paused = Job("a", 1_000_003.0), Job("b", 1_000_001.0), Job("c", 1_000_002.0), Job("p", None)
    for job in (a, b, c, paused):
        store.add_job(job)
    assert ["b", "c"] == [j.id for j in store.get_due_jobs(clock.at(1_000_002.0))]
    assert clock.at(1_000_001.0) == store.get_next_run_time()
    b.next_run_time = clock.at(1_000_005.0)
    store.update_job(b)
    assert ["c", "a", "b", "p"] == [j.id for j in store.get_all_jobs()]
    store.remove_job("c")
    assert ["a"] == [j.id for j in store.get_due_jobs(clock.at(1_000_004.0))]
    assert store.lookup_job("c") is None


def test_a_wake_up_that_read_now_before_a_step_finds_nothing_due() -> None:
    """The job store refreshes the zone before answering: when the wall clock stepped since the scheduler read its
    `now` (on the old offset, an hour off), it answers "nothing due" (so no job runs early or is moved by the hour)
    and the next wake-up, on the new offset, gets the due jobs."""
    wall = [time.time()]
    clock = SchedulerClock(wall=lambda: wall[0])

    class Job:
        def __init__(self, job_id: str, at: float) -> None:
            self.id, self.next_run_time = job_id, clock.at(at)

    store = SteadyJobStore()
    store.add_job(Job("a", clock.timestamp() - 1))
    zone = SteadyZone(clock, wall=lambda: wall[0])
    now = clock.now().replace(tzinfo=zone)
    assert ["a"] == [j.id for j in store.get_due_jobs(now)]
    wall[0] -= 3600
    assert [] == store.get_due_jobs(now)
    assert ["a"] == [j.id for j in store.get_due_jobs(clock.now().replace(tzinfo=zone))]


async def test_wall_clock_steps_neither_stop_probing_nor_invent_skipped_runs() -> None:
    """Five checks at 200 ms, with a wall clock an hour off real time from the start, stepped back an hour and
    then forward two: in every phase probing goes on at about 25 runs a second and no run is skipped for any
    reason. (Had APScheduler or the runner read the real or the stepped clock for scheduling, every run would
    look an hour early, so none would run, or an hour late, so all would be skipped.)"""
    wall = SteppingWall(offset=-3600.0)
    config = Config.model_validate({
        "targets": {"t": {"base_url": "http://127.0.0.1:9"}},
        "defaults": {"interval": "200ms", "timeout": "100ms"},
        "checks": [{"name": f"c{i}", "kind": "http", "target": "t"} for i in range(5)],
    })
    seen: list[float] = []

    async def ok(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        return ProbeResult(Outcome.OK, "fine")

    def on_result(result: Result) -> None:
        seen.append(time.monotonic())

    metrics = Metrics(process_metrics=False)
    deps = build_deps(config, clock=wall)
    runner = Runner(config, deps, metrics, State(wall.monotonic), on_result=on_result,
                    registry={"http": dataclasses.replace(probes.REGISTRY["http"], probe=ok)})
    clock = SchedulerClock(wall=wall.time)
    store = RecordingStore(clock)
    scheduler = MonotonicScheduler(clock, jobstores={"default": store})
    runner.start(scheduler)
    scheduler.start()
    rates = []
    try:
        for step in (0.0, -3600.0, 7200.0):
            wall.offset += step
            begun, count = time.monotonic(), len(seen)
            await until_async(lambda: len(seen) - count >= 20, timeout=10, what="20 more runs")  # noqa: B023
            rates.append(20 / (time.monotonic() - begun))
    finally:
        scheduler.shutdown(wait=False)
        await deps.aclose()
    # APScheduler's own due-job scan ran on the scheduler clock (an hour behind the real one), every time.
    assert store.asked
    assert [] == [(used, ours) for used, ours in store.asked if abs(used - ours) > 0.5]
    skipped = {r: metrics.skipped.labels(r)._value.get() for r in SKIP_REASONS}
    assert dict.fromkeys(SKIP_REASONS, 0.0) == skipped
    for rate in rates:
        assert 12 <= rate <= 60, rates


def test_a_lead_of_a_day_or_more_is_refused_rather_than_clamped() -> None:
    """A scheduler clock two days off the wall clock cannot be a time zone (an offset is under 24 h): asking the
    zone for a datetime's epoch seconds (what APScheduler's wake-up and interval trigger do) raises, so scheduling
    stops loudly (and /healthz fails) instead of every job looking days late."""
    clock = SchedulerClock(wall=lambda: time.time() - 2 * 86_400)
    with pytest.raises(ValueError, match="24"):
        dt.datetime.now(clock.zone).timestamp()
