"""monitor/core/retry_after.py: the one Retry-After parser, used by the probes (rate_limited) and the sinks."""

from __future__ import annotations

import email.utils

import psycopg
import pytest
from psycopg import errors as pg_errors

from monitor.core.pgconn import is_stale_connection
from monitor.core.retry_after import retry_after_seconds

NOW = 1_780_000_000.0


@pytest.mark.parametrize(("header", "seconds"), [
    ("30", 30.0),
    (" 120 ", 120.0),
    ("0", 0.0),
    ("1.5", 1.5),
    (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
    (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("-5", None),
    ("soon", None),
    ("", None),
    ("inf", None),
    ("nan", None),
    ("1e3", None),
    (None, None),
])
def test_retry_after_forms(header: str | None, seconds: float | None) -> None:
    """Retry-After as delay-seconds or as an HTTP-date (less now, never below 0); anything else (a float spelling
    Python accepts but HTTP does not, such as inf, nan or 1e3, or no header at all) is no wait."""
    assert seconds == retry_after_seconds(header, NOW)


def test_the_sinks_and_the_probes_read_retry_after_with_the_same_parser() -> None:
    """alerts/sinks/spec.py and probes/_http.py (and probes/identity.py) call the core parser: one rule for every
    Retry-After the daemon reads."""
    import alerts.sinks.spec
    import probes._http
    import probes.identity

    assert alerts.sinks.spec.retry_after_seconds is retry_after_seconds
    assert probes._http.retry_after_seconds is retry_after_seconds
    assert probes.identity.retry_after_seconds is retry_after_seconds


@pytest.mark.parametrize(("exc", "stale"), [
    (psycopg.InterfaceError("the connection is closed"), True),
    (psycopg.OperationalError("server closed the connection unexpectedly"), True),
    (pg_errors.AdminShutdown("terminating connection due to administrator command"), True),
    (pg_errors.ConnectionTimeout("connection timeout expired"), False),
    (pg_errors.UndefinedTable('relation "x" does not exist'), False),
    (TimeoutError(), False),
])
def test_stale_connection_rule(exc: BaseException, stale: bool) -> None:
    """A dead reused connection (interface error, SQLSTATE-less or class 08/57P01 operational error) is worth one
    fresh retry; a connect timeout or an SQL error is the answer itself."""
    assert stale == is_stale_connection(exc)
