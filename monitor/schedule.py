"""Scheduling on monotonic time: APScheduler 3 with a "now" that a wall-clock step cannot move.

APScheduler 3 reads `datetime.now()` to find due jobs (apscheduler/schedulers/base.py) and to judge misfires
(apscheduler/executors/base.py). When NTP steps the wall clock back an hour, every job looks an hour early and
probing stops; stepped forward, every job looks an hour late and coalesces thousands of "missed" runs.

The shim, and why this one:
- `SchedulerClock` is the scheduler's time: the wall clock read ONCE (at construction) plus the monotonic time
  elapsed since. It advances exactly like `time.monotonic()` and never steps; its datetimes stay near real dates,
  so triggers and logs read sensibly. Both sources are injectable, so a test can step a fake wall clock by an hour
  and watch nothing change.
- `MonotonicScheduler` (an `AsyncIOScheduler`) runs APScheduler's own methods that read "now" with its clock
  active. They read it through the module global `datetime` of apscheduler.schedulers.base, which is replaced
  (once, idempotently) by `_SchedulerDatetime`: a datetime subclass whose `now()` answers the active scheduler
  clock (a context variable) and is the real `datetime.now()` everywhere else. Copying APScheduler's
  `_process_jobs` (90 lines) into a subclass was the alternative; it would silently drift from the library on the
  next 3.x release, where this shim depends only on the module reading `datetime.now(tz)`.
- The executor's misfire check is not shimmed: jobs are added with `misfire_grace_time=None` (no check), and the
  runner judges lateness itself on the scheduler clock (a run that starts too late is skipped as saturated).
- Callers never read `datetime.now()` for scheduling: they ask `scheduler.clock`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers import base as _aps_base
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.core.clock import SteadyClock


class SchedulerClock(SteadyClock):
    """The scheduler's time: wall-clock seconds at construction plus monotonic seconds elapsed since.

    `wall` is read once; `monotonic` must be the event loop's clock (`time.monotonic`) in the daemon, so that
    durations measured on either agree.
    """

    def now(self, tz: dt.tzinfo | None = dt.UTC) -> dt.datetime:
        """`timestamp()` as an aware datetime (UTC unless `tz` says otherwise)."""
        return dt.datetime.fromtimestamp(self.timestamp(), tz or dt.UTC)


_ACTIVE: contextvars.ContextVar[SchedulerClock | None] = contextvars.ContextVar(
    "pam_monitor_scheduler_clock", default=None
)


class _SchedulerDatetime(dt.datetime):
    """What apscheduler.schedulers.base calls `datetime`: `now()` is the active scheduler clock, if any."""

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
        """The active SchedulerClock's now, or the real wall clock outside a MonotonicScheduler call."""
        clock = _ACTIVE.get()
        if clock is None:
            return dt.datetime.now(tz)
        return clock.now(tz)


def _install() -> None:
    """Point APScheduler's scheduler module at `_SchedulerDatetime` (idempotent; harmless to other schedulers)."""
    if _aps_base.datetime is not _SchedulerDatetime:
        _aps_base.datetime = _SchedulerDatetime


class MonotonicScheduler(AsyncIOScheduler):  # type: ignore[misc]  # APScheduler ships no type hints
    """An AsyncIOScheduler (UTC) whose notion of now is `clock`: wall-clock steps neither stop it nor make it
    invent missed runs."""

    def __init__(self, clock: SchedulerClock | None = None, **options: Any) -> None:
        _install()
        self.clock = clock or SchedulerClock()
        super().__init__(timezone=dt.UTC, **options)

    def _with_clock(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        token = _ACTIVE.set(self.clock)
        try:
            return method(*args, **kwargs)
        finally:
            _ACTIVE.reset(token)

    def _process_jobs(self) -> Any:
        """APScheduler's due-job scan, on the scheduler clock."""
        return self._with_clock(super()._process_jobs)

    def _real_add_job(self, *args: Any, **kwargs: Any) -> Any:
        """APScheduler's add (it computes a first run time from now when none is given), on the scheduler clock."""
        return self._with_clock(super()._real_add_job, *args, **kwargs)

    def reschedule_job(self, *args: Any, **kwargs: Any) -> Any:
        """APScheduler's reschedule, on the scheduler clock."""
        return self._with_clock(super().reschedule_job, *args, **kwargs)

    def resume_job(self, *args: Any, **kwargs: Any) -> Any:
        """APScheduler's resume, on the scheduler clock."""
        return self._with_clock(super().resume_job, *args, **kwargs)


__all__ = ["MonotonicScheduler", "SchedulerClock"]
