"""monitor.core.durations: the duration forms a config accepts, the ones it refuses, and how messages print them."""

from __future__ import annotations

import re

import pytest

from monitor.core.durations import ALLOWED, format_duration, parse_duration, parse_rate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5), ("5ms", 0.005), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0),
        ("1h30m", 5400.0), ("1m30s500ms", 90.5), ("0.5s", 0.5), ("1.5", 1.5), ("0", 0.0), (" 2S ", 2.0),
        (7, 7.0), (2.5, 2.5),
    ],
)
def test_accepted_forms(text: str | float, seconds: float) -> None:
    """Units ms/s/m/h/d, combined units, bare numbers (text or not), any case, surrounding blanks."""
    assert seconds == pytest.approx(parse_duration(text))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("soon", "cannot read 'soon' as a duration"),
        ("5 m", "cannot read '5 m' as a duration"),
        ("1x", "cannot read '1x' as a duration"),
        ("1h-5m", "cannot read '1h-5m' as a duration"),
        ("", "empty duration"),
        ("-1", "must be a finite, non-negative duration"),
        (-1, "must be a finite, non-negative duration"),
        ("inf", "must be a finite, non-negative duration"),
        ("nan", "must be a finite, non-negative duration"),
        (float("inf"), "must be a finite, non-negative duration"),
        (True, "expected a number of seconds"),
        (None, "expected a number of seconds"),
        ([1], "expected a number of seconds"),
    ],
)
def test_refused_values_name_the_problem_and_the_accepted_forms(value: object, problem: str) -> None:
    """Anything else is a ValueError that says what is wrong and lists the forms that would work."""
    with pytest.raises(ValueError, match=re.escape(ALLOWED)) as info:
        parse_duration(value)
    assert str(info.value).startswith(problem), str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0.00 s"), (0.123, "0.12 s"), (2.25, "2.2 s"), (10, "10 s"), (150, "150 s"), (120, "2 m"),
     (3600, "60 m")],
)
def test_format_duration_is_compact_and_readable(seconds: float, text: str) -> None:
    """Sub-second with two decimals, seconds with one, tens of seconds whole, whole minutes from two minutes up."""
    assert text == format_duration(seconds)


@pytest.mark.parametrize(("text", "per_second"), [("40/m", 40 / 60), ("2/s", 2.0), ("1000/h", 1000 / 3600),
                                                  (" 1.5 / M ", 1.5 / 60)])
def test_rates_are_read_per_second(text: str, per_second: float) -> None:
    """`N/s`, `N/m`, `N/h` become events per second, whatever the spacing and case."""
    assert per_second == pytest.approx(parse_rate(text))


@pytest.mark.parametrize("bad", ["40", 40, "0/m", "x/m", "40/d", True, None])
def test_rates_refuse_what_has_no_unit_or_is_not_positive(bad: object) -> None:
    """A bare number, zero, an unknown unit or another type is refused, naming the accepted form."""
    with pytest.raises(ValueError, match="40/m"):
        parse_rate(bad)
