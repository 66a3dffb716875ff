"""Maintenance windows: is a notification silenced right now? (one-off or weekly, in a time zone)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from monitor.core.config import Maintenance

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def window_active(window: Maintenance, now: float) -> bool:
    """Whether `now` (epoch seconds) falls inside the window.

    One-off: `start` <= now < `end`, ISO date-times; a time without an offset is read in `timezone`.
    Recurring: on each listed day (in `timezone`), from `start` to `end` (HH:MM); an `end` at or before
    `start` means the window runs past midnight into the next day.
    """
    return _occurrence(window, now) is not None


def window_end(window: Maintenance, now: float) -> float | None:
    """When the occurrence of the window that `now` falls in ends (epoch seconds); None when it is not open."""
    occurrence = _occurrence(window, now)
    return None if occurrence is None else occurrence[1].timestamp()


def _occurrence(window: Maintenance, now: float) -> tuple[dt.datetime, dt.datetime] | None:
    """The (begin, end) of the occurrence of the window that `now` falls in, or None."""
    tz = ZoneInfo(window.timezone)
    if window.days is None:
        start = _aware(dt.datetime.fromisoformat(window.start), tz)
        end = _aware(dt.datetime.fromisoformat(window.end), tz)
        moment = dt.datetime.fromtimestamp(now, tz=dt.UTC)
        return (start, end) if start <= moment < end else None
    local = dt.datetime.fromtimestamp(now, tz=tz)
    start_t = dt.time.fromisoformat(window.start)
    end_t = dt.time.fromisoformat(window.end)
    crosses = end_t <= start_t
    # A window that crosses midnight may have started on the previous day.
    for back in (0, 1) if crosses else (0,):
        day = local.date() - dt.timedelta(days=back)
        if _DAYS[day.weekday()] not in window.days:
            continue
        begin = dt.datetime.combine(day, start_t, tzinfo=tz)
        finish = dt.datetime.combine(day + dt.timedelta(days=1) if crosses else day, end_t, tzinfo=tz)
        # Compare in UTC so a DST change inside the window is handled by zoneinfo, not by wall-clock maths.
        if begin.astimezone(dt.UTC) <= local.astimezone(dt.UTC) < finish.astimezone(dt.UTC):
            return begin, finish
    return None


def active_window(windows: Iterable[Maintenance], now: float) -> Maintenance | None:
    """The first window in effect at `now`, or None."""
    for window in windows:
        if window_active(window, now):
            return window
    return None


def _aware(moment: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment
