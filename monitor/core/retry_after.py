"""Retry-After (RFC 9110 section 10.2.3): one parser for the probes (a target shedding load) and the alert sinks
(a receiver asking to be left alone)."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re

_DELAY_SECONDS = re.compile(r"\d{1,12}(\.\d+)?")


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds, or an HTTP-date less `now` (wall clock, epoch
    seconds), never below 0; None when the header is missing or is neither."""
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # an HTTP-date is always GMT; parsedate gives a naive datetime for "-0000"
        moment = moment.replace(tzinfo=dt.UTC)
    wait = moment.timestamp() - now
    return max(wait, 0.0) if math.isfinite(wait) else None
