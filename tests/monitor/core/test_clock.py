"""monitor.core.clock: the real clock's two time sources and the one timestamp format people and sinks read."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from monitor.core.clock import Clock, SystemClock, iso


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_795_000_000.125, "2026-11-18T11:06:40.125Z"),
        (1_795_000_000.9999, "2026-11-18T11:06:40.999Z"),  # truncated, never rounded into the next second
    ],
)
def test_iso_is_rfc3339_utc_with_milliseconds_and_z(ts: float, text: str) -> None:
    """Timestamps print as RFC 3339 in UTC with exactly three decimals and a Z (no +00:00)."""
    assert text == iso(ts)


def test_iso_reads_back_to_the_same_instant() -> None:
    """What iso() prints parses back (datetime.fromisoformat) to the instant, to the millisecond."""
    ts = 1_700_000_123.456
    assert ts == pytest.approx(dt.datetime.fromisoformat(iso(ts)).timestamp(), abs=0.001)


WALL_TOLERANCE_S = 1.0  # the wall clock may be stepped (NTP) between two reads; the monotonic one may not


def test_system_clock_follows_the_real_clocks() -> None:
    """SystemClock.monotonic() reads the monotonic clock (between two reads of it) and .time() the wall clock."""
    clock: Clock = SystemClock()
    mono_before = time.monotonic()
    mono, wall = clock.monotonic(), clock.time()
    mono_after = time.monotonic()
    assert mono_before <= mono <= mono_after
    assert abs(time.time() - wall) < WALL_TOLERANCE_S
