"""Parse and print durations such as `500ms`, `30s`, `5m`, `1h` or a bare number of seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
ALLOWED = "a number of seconds or a duration such as 500ms, 30s, 5m, 1h, 1h30m"


def parse_duration(value: object) -> float:
    """Return the duration in seconds; raise ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"expected {ALLOWED}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_units(text)
    else:
        raise ValueError(f"expected {ALLOWED}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"must be a finite, non-negative duration ({ALLOWED})")
    return seconds


def _parse_units(text: str) -> float:
    pos = 0
    total = 0.0
    if not text:
        raise ValueError(f"empty duration; expected {ALLOWED}")
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValueError(f"cannot read {text!r} as a duration; expected {ALLOWED}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Render seconds compactly for messages (`0.12 s`, `2 s`, `5 m`)."""
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} m"
    if seconds >= 10:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.1f} s"
    return f"{seconds:.2f} s"


_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*(s|m|h)")
RATE_ALLOWED = "a rate such as 40/m, 2/s or 1000/h (requests per second, minute or hour)"


def parse_rate(value: object) -> float:
    """Return a rate written `N/s`, `N/m` or `N/h` in events per second; raise ValueError naming the form."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected {RATE_ALLOWED}")
    if isinstance(value, int | float):
        raise ValueError(f"expected {RATE_ALLOWED}, got a bare number {value!r}: say per what, e.g. {value}/m")
    match = _RATE.fullmatch(value.strip().lower())
    if match is None:
        raise ValueError(f"cannot read {value!r} as a rate; expected {RATE_ALLOWED}")
    per = {"s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    rate = float(match.group(1)) / per
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"must be a positive rate ({RATE_ALLOWED})")
    return rate
