"""Maintenance windows: one-off and weekly, in a time zone, across midnight."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from alerts.lifecycle.maintenance import active_window, window_active
from monitor.core.config import Maintenance


def at(text: str, tz: str = "UTC") -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-03-02T01:59", False),  # Monday, before
        ("2026-03-02T02:00", True),   # start is inclusive
        ("2026-03-02T03:59", True),
        ("2026-03-02T04:00", False),  # end is exclusive
        ("2026-03-03T02:30", False),  # Tuesday is not listed
    ],
)
def test_weekly_window_in_its_time_zone(moment: str, expected: bool) -> None:
    """mon 02:00-04:00 Europe/Berlin holds exactly then, Berlin time."""
    window = Maintenance(days=["mon"], start="02:00", end="04:00", timezone="Europe/Berlin")
    assert expected == window_active(window, at(moment, "Europe/Berlin"))


def test_weekly_window_is_not_utc() -> None:
    """The same window is not active at 02:30 UTC (03:30 Berlin is, 02:30 UTC is 03:30 Berlin in winter)."""
    window = Maintenance(days=["mon"], start="02:00", end="03:00", timezone="Europe/Berlin")
    assert False is window_active(window, at("2026-03-02T02:30", "UTC"))
    assert True is window_active(window, at("2026-03-02T01:30", "UTC"))


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-03-06T22:59", False),  # Friday before the start
        ("2026-03-06T23:30", True),   # Friday night
        ("2026-03-07T00:30", True),   # past midnight, Saturday (not listed) but the window began Friday
        ("2026-03-07T01:00", False),
        ("2026-03-07T23:30", False),  # Saturday night: Saturday is not listed
    ],
)
def test_window_crossing_midnight(moment: str, expected: bool) -> None:
    """fri 23:00-01:00 America/New_York runs into Saturday morning."""
    window = Maintenance(days=["fri"], start="23:00", end="01:00", timezone="America/New_York")
    assert expected == window_active(window, at(moment, "America/New_York"))


def test_one_off_window_with_and_without_offset() -> None:
    """A naive one-off window is read in its time zone; an explicit offset wins."""
    naive = Maintenance(start="2026-05-01T10:00", end="2026-05-01T11:00", timezone="Asia/Tokyo")
    assert True is window_active(naive, at("2026-05-01T10:30", "Asia/Tokyo"))
    assert False is window_active(naive, at("2026-05-01T10:30", "UTC"))
    explicit = Maintenance(start="2026-05-01T10:00+00:00", end="2026-05-01T11:00+00:00", timezone="Asia/Tokyo")
    assert True is window_active(explicit, at("2026-05-01T10:30", "UTC"))


def test_active_window_returns_the_matching_one() -> None:
    """Of several windows, the one in effect is returned; none matches -> None."""
    a = Maintenance(start="2026-05-01T10:00", end="2026-05-01T11:00", reason="a")
    b = Maintenance(start="2026-05-02T10:00", end="2026-05-02T11:00", reason="b")
    assert "b" == getattr(active_window([a, b], at("2026-05-02T10:05")), "reason", None)
    assert None is active_window([a, b], at("2026-05-03T10:05"))
