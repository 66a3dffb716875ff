"""A clock the test moves by hand (implements monitor.core.clock.Clock)."""

from __future__ import annotations

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """Wall-clock and monotonic readings that change only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def time(self) -> float:
        """Seconds since the epoch, as set by the test."""
        return self.now

    def monotonic(self) -> float:
        """The same reading."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds
