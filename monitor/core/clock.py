"""Time sources: the Clock protocol every component takes, and the real clock."""

from __future__ import annotations

import datetime as dt
import time
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


def iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds and a Z (what Alertmanager, PagerDuty and /status show)."""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
