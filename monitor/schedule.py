"""Scheduling on monotonic time: APScheduler 3 with a "now" that a wall-clock step cannot move.

APScheduler 3 reads `datetime.now(scheduler.timezone)` to find due jobs and to compute first run times. When NTP
steps the wall clock back an hour, every job looks an hour early and probing stops; stepped forward, every job
looks an hour late and coalesces thousands of "missed" runs.

How, through APScheduler's public extension points only (its `timezone` option, a job store) and Python's
public `tzinfo` protocol:
- `SchedulerClock` is the scheduler's time: the wall clock read ONCE (at construction) plus the monotonic time
  elapsed since. It advances exactly like `time.monotonic()` and never steps; its datetimes stay near real dates,
  so triggers and logs read sensibly. Both sources are injectable, so a test can step a fake wall clock by an hour
  and watch nothing change.
- `SteadyZone` is the scheduler's time zone: its offset from UTC is how far the scheduler clock is ahead of the
  wall clock (a few milliseconds of drift; an hour after an NTP step back). `datetime.now(zone)` is therefore the
  scheduler clock's now, and datetimes in the zone compare and subtract as scheduler-clock values, because Python
  ignores the offset between two datetimes of the same tzinfo. The offset is re-read once per scheduler wake-up
  (by the job store, `SteadyZone.refresh`) and changes only when it moved by more than `STEP_TOLERANCE_S`: held
  still in between, interval arithmetic (a trigger's timestamp() then fromtimestamp()) is exact, and a step can
  never land between the two halves of one computation and move a job by the step.
- `SteadyJobStore` keys jobs on their scheduler-clock value. APScheduler's MemoryJobStore caches each job's
  epoch timestamp when it is stored; after a step those cached numbers are an hour off the "now" they are
  compared with, and the scheduler would wake up every few microseconds to find nothing due. Asked for due jobs,
  it first refreshes the zone's offset; when that moved (a step since the last wake-up), the "now" it was given
  was read on the old offset, so it answers "nothing due" and the scheduler wakes again at once, on the new one.
- The executor's misfire check reads the real wall clock: jobs are added with `misfire_grace_time=None` (no
  check), and the runner judges lateness itself on the scheduler clock (`SchedulerClock.seconds` of a run's
  scheduled time; a run that starts too late is skipped as saturated).
- Callers never read `datetime.now()` for scheduling: they ask `scheduler.clock`.

A limit: a tzinfo offset must stay under 24 hours, so a wall clock stepped by a day or more while the daemon runs
(a board without a real-time clock booting in 1970, then set by NTP) makes APScheduler's wake-up raise (asyncio
logs it) and scheduling stop; /healthz then fails (the heartbeat job stops) and the service manager's restart
re-anchors the clock. (Clamping the offset instead would make every job look days late, and APScheduler would
then enumerate every missed run time.)
"""

from __future__ import annotations

import bisect
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.core.clock import SteadyClock

STEP_TOLERANCE_S = 0.001
"""A change of the scheduler clock's lead over the wall clock smaller than this is drift, not a step: ignored, so
that the zone's offset, and the arithmetic done with it, stays constant between steps."""

_EPOCH = dt.datetime(1970, 1, 1)


class SchedulerClock(SteadyClock):
    """The scheduler's time: wall-clock seconds at construction plus monotonic seconds elapsed since.

    `wall` is read once; `monotonic` must be the event loop's clock (`time.monotonic`) in the daemon, so that
    durations measured on either agree.
    """

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(wall, monotonic)
        self.zone = SteadyZone(self)

    def now(self) -> dt.datetime:
        """`timestamp()` as a datetime in the scheduler's zone (what APScheduler's own "now" is)."""
        return self.at(self.timestamp())

    def at(self, seconds: float) -> dt.datetime:
        """A scheduler-clock time (seconds, as `timestamp()` counts them) as a datetime in the scheduler's zone."""
        return (_EPOCH + dt.timedelta(seconds=seconds)).replace(tzinfo=self.zone)

    def seconds(self, when: dt.datetime) -> float:
        """A datetime from the scheduler (a job's next run time, an event's scheduled run time) as scheduler-clock
        seconds, comparable with `timestamp()` whatever the wall clock did since."""
        if when.tzinfo is not self.zone:
            when = when.astimezone(self.zone)
        return (when.replace(tzinfo=None) - _EPOCH).total_seconds()


class SteadyZone(dt.tzinfo):
    """The time zone whose offset from UTC is the scheduler clock's lead over the wall clock.

    `wall` is the clock `datetime.now()` reads (the real one: a test that steps an injected wall clock steps the
    scheduler clock's anchor, not this).
    """

    def __init__(self, clock: SteadyClock, wall: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._lead = clock.timestamp() - wall()
        self._offset = dt.timedelta(seconds=self._lead)  # made once per step: utcoffset is called several times a run

    def lead(self) -> float:
        """Seconds the scheduler clock is ahead of the wall clock, as of the last `refresh`."""
        return self._lead

    def refresh(self) -> bool:
        """Re-read the lead; True when it moved by more than STEP_TOLERANCE_S (the wall clock was stepped) and was
        updated, False when it is unchanged (drift below the tolerance is ignored)."""
        fresh = self._clock.timestamp() - self._wall()
        if abs(fresh - self._lead) <= STEP_TOLERANCE_S:
            return False
        self._lead = fresh
        self._offset = dt.timedelta(seconds=fresh)
        return True

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        """The lead, as a UTC offset (the same for every datetime: it describes the clocks, not the date)."""
        return self._offset

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        """No daylight saving: the lead changes only when the wall clock is stepped."""
        return dt.timedelta(0)

    def tzname(self, when: dt.datetime | None) -> str:
        """What logs and reprs show."""
        return "steady"

    def fromutc(self, when: dt.datetime) -> dt.datetime:
        """UTC (a wall-clock reading) to the scheduler clock: what `datetime.now(zone)` answers with."""
        return when + self.utcoffset(when)

    def __repr__(self) -> str:
        return f"SteadyZone(lead={self._lead:.6f}s)"


def _seconds(when: dt.datetime) -> float:
    """A datetime as scheduler-clock seconds: its face value in a SteadyZone. (The runner hands the scheduler only
    datetimes of its zone; any other is placed by its epoch timestamp, as if the wall clock had never stepped.)"""
    if isinstance(when.tzinfo, SteadyZone):
        return (when.replace(tzinfo=None) - _EPOCH).total_seconds()
    return when.timestamp()


class SteadyJobStore(BaseJobStore):  # type: ignore[misc]  # APScheduler ships no type hints
    """APScheduler's in-memory job store, ordered on scheduler-clock values that a wall-clock step leaves alone.

    The interface is APScheduler's (`BaseJobStore`); only the ordering key differs from `MemoryJobStore`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._keys: list[tuple[float, str]] = []
        self._jobs: dict[str, tuple[tuple[float, str], Any]] = {}

    @staticmethod
    def _key(job: Any) -> tuple[float, str]:
        """Sort key: the next run as scheduler-clock seconds (a paused job, with none, last), then the id."""
        when = job.next_run_time
        return (float("inf") if when is None else _seconds(when), job.id)

    def lookup_job(self, job_id: str) -> Any:
        """The job with this id, or None."""
        entry = self._jobs.get(job_id)
        return None if entry is None else entry[1]

    def get_due_jobs(self, now: dt.datetime) -> list[Any]:
        """Jobs whose next run is at or before `now` (the scheduler's now, in its zone), earliest first; none when
        the zone's offset moved since `now` was read (see the module docstring)."""
        if isinstance(now.tzinfo, SteadyZone) and now.tzinfo.refresh():
            return []
        end = bisect.bisect_right(self._keys, (_seconds(now), "\U0010ffff"))
        return [self._jobs[job_id][1] for _, job_id in self._keys[:end]]

    def get_next_run_time(self) -> dt.datetime | None:
        """The earliest next run time, or None when no job has one."""
        if not self._keys or self._keys[0][0] == float("inf"):
            return None
        when: dt.datetime = self._jobs[self._keys[0][1]][1].next_run_time
        return when

    def get_all_jobs(self) -> list[Any]:
        """Every job, earliest next run first."""
        return [self._jobs[job_id][1] for _, job_id in self._keys]

    def add_job(self, job: Any) -> None:
        """Store a new job (its id must be new)."""
        if job.id in self._jobs:
            raise ConflictingIdError(job.id)
        key = self._key(job)
        bisect.insort(self._keys, key)
        self._jobs[job.id] = (key, job)

    def update_job(self, job: Any) -> None:
        """Replace a stored job, re-placing it if its next run time changed."""
        entry = self._jobs.get(job.id)
        if entry is None:
            raise JobLookupError(job.id)
        key = self._key(job)
        if key != entry[0]:
            del self._keys[bisect.bisect_left(self._keys, entry[0])]
            bisect.insort(self._keys, key)
        self._jobs[job.id] = (key, job)

    def remove_job(self, job_id: str) -> None:
        """Remove a stored job."""
        entry = self._jobs.pop(job_id, None)
        if entry is None:
            raise JobLookupError(job_id)
        del self._keys[bisect.bisect_left(self._keys, entry[0])]

    def remove_all_jobs(self) -> None:
        """Remove every job."""
        self._keys = []
        self._jobs = {}

    def shutdown(self) -> None:
        """Forget every job (nothing persists)."""
        self.remove_all_jobs()


class MonotonicScheduler(AsyncIOScheduler):  # type: ignore[misc]  # APScheduler ships no type hints
    """An AsyncIOScheduler whose time zone is `clock`'s SteadyZone and whose default job store is a SteadyJobStore:
    wall-clock steps neither stop it nor make it invent missed runs."""

    def __init__(self, clock: SchedulerClock | None = None, **options: Any) -> None:
        self.clock = clock or SchedulerClock()
        options.setdefault("jobstores", {"default": SteadyJobStore()})
        super().__init__(timezone=self.clock.zone, **options)


__all__ = ["MonotonicScheduler", "SchedulerClock", "SteadyJobStore", "SteadyZone"]
