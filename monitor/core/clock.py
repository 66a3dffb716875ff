"""Time sources: the Clock protocol every component takes, and the real clock."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """Time source; tests inject a fake one."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps people read, never for scheduling)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds, for durations and schedules."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()


class SteadyClock:
    """Epoch seconds that never step: the wall clock read once (at construction) plus monotonic time since.

    For scheduling (the scheduler's runs, delivery's retries and re-posts): an NTP step of the wall clock moves
    nothing scheduled on it. Times people or sinks read stay on the wall clock.
    """

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._offset = wall() - monotonic()

    def timestamp(self) -> float:
        """Seconds since the epoch as counted from construction on monotonic time."""
        return self._monotonic() + self._offset


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds and a Z (what Alertmanager, PagerDuty and /status show)."""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
