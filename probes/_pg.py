"""PostgreSQL helpers for the db prober and the postgrest prober's catalogue look-up: SQL, errors, redaction."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors

from monitor.core.pgconn import is_stale_connection as is_stale_connection
from monitor.core.results import Outcome
from monitor.core.secrets import Redactor

CANARY_TEMP_TABLE = "pam_monitor_canary"

# First statement of every run: arms the transaction-local statement_timeout (parameterised, so no SET with
# string formatting, and SET LOCAL semantics: nothing leaks into a pooled session) and does the SELECT 1.
SQL_HELLO = (
    "SELECT set_config('statement_timeout', %s, true), 1, pg_is_in_recovery(), "
    "current_setting('transaction_read_only'), pg_backend_pid(), current_setting('server_version')"
)
SQL_SET_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"

# Names are quoted with %I so a configured `UserSettings` means exactly that table, as PostgREST would.
SQL_TABLES = """
SELECT r.ord, c.oid IS NOT NULL, coalesce(c.relrowsecurity, false)
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS r(nsp, rel, ord)
LEFT JOIN pg_catalog.pg_class c ON c.oid = to_regclass(format('%%I.%%I', r.nsp, r.rel))
ORDER BY r.ord
"""

# pg_attribute, not information_schema: the latter hides columns a low-privilege role cannot use.
SQL_MISSING_COLUMNS = """
SELECT r.ord
FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS r(nsp, rel, col, ord)
WHERE NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = to_regclass(format('%%I.%%I', r.nsp, r.rel))
      AND a.attname = r.col AND a.attnum > 0 AND NOT a.attisdropped)
ORDER BY r.ord
"""


def dsn_redactor(dsn: str) -> Redactor:
    """A redactor for the DSN itself and every form of its password (raw and URL-encoded)."""
    return Redactor([dsn])


def one_line(text: str, limit: int = 300) -> str:
    """`text` on one line, at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_text(exc: BaseException, redact: Redactor) -> str:
    """The useful part of a driver error (server's primary message, else the first line), scrubbed."""
    if isinstance(exc, psycopg.Error):
        primary = exc.diag.message_primary
        if primary:
            return one_line(redact(primary))
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    # psycopg prefixes every connect failure with this; the outcome already says it.
    text = text.removeprefix("connection failed: ")
    return one_line(redact(text))


# libpq reports connect-time server errors as text only (no SQLSTATE field); map the common ones back.
_CONNECT_SQLSTATES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), state)
    for pattern, state in (
        (r"password authentication failed", "28P01"),
        (r"too many clients already|remaining connection slots are reserved", "53300"),
        (r"database \".*\" does not exist", "3D000"),
        (r"role \".*\" does not exist|no pg_hba\.conf entry|authentication failed", "28000"),
        (r"the database system is (starting up|shutting down|in recovery mode|not yet accepting)", "57P03"),
        (r"terminating connection due to administrator command", "57P01"),
    )
)
_DNS = re.compile(
    r"failed to resolve host|could not translate host name|name or service not known|"
    r"temporary failure in name resolution|nodename nor servname|no address associated",
    re.IGNORECASE,
)
_TLS = re.compile(
    r"SSL error|SSL SYSCALL|certificate|server does not support SSL|sslmode|tlsv1|handshake", re.IGNORECASE
)


def sqlstate_of(exc: psycopg.Error) -> str | None:
    """The error's SQLSTATE, or one recovered from a connect-time message libpq gave as text only."""
    if exc.sqlstate:
        return exc.sqlstate
    text = str(exc)
    for pattern, state in _CONNECT_SQLSTATES:
        if pattern.search(text):
            return state
    return None


@dataclass(frozen=True)
class ErrorClass:
    """How a driver error reads: the outcome, its SQLSTATE (if any) and a short cause."""

    outcome: Outcome
    sqlstate: str | None
    cause: str


def classify(exc: BaseException) -> ErrorClass | None:
    """Map an exception from the driver (or a deadline) to an outcome; None means "not a target failure"."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, pg_errors.ConnectionTimeout)):
        return ErrorClass(Outcome.TIMEOUT, None, "deadline reached")
    if isinstance(exc, psycopg.Error):
        state = sqlstate_of(exc)
        text = str(exc)
        if state in ("57014", "55P03"):
            return ErrorClass(Outcome.TIMEOUT, state, "statement canceled by its timeout")
        if state == "42P01":
            return ErrorClass(Outcome.TABLE_MISSING, state, "relation does not exist")
        if state == "42501":
            return ErrorClass(Outcome.PERMISSION_DENIED, state, "permission denied")
        if state == "42P17":
            return ErrorClass(Outcome.POLICY_ERROR, state, "invalid (recursive) row-level security policy")
        if state is not None and (state.startswith("08") or state in ("57P01", "57P02", "57P03")):
            return ErrorClass(Outcome.CONNECTION_ERROR, state, "connection lost or refused")
        if state is not None:
            return ErrorClass(Outcome.DB_ERROR, state, "database error")
        if _DNS.search(text):
            return ErrorClass(Outcome.DNS_ERROR, None, "host name did not resolve")
        if _TLS.search(text) and "invalid response to SSL negotiation" not in text:
            return ErrorClass(Outcome.TLS_ERROR, None, "TLS failed")
        if "FATAL:" in text:
            return ErrorClass(Outcome.DB_ERROR, None, "the server refused the connection")
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return ErrorClass(Outcome.CONNECTION_ERROR, None, "connection failed")
        return ErrorClass(Outcome.DB_ERROR, None, "driver error")
    if isinstance(exc, OSError):
        return ErrorClass(Outcome.CONNECTION_ERROR, None, "network error")
    return None


def relation_in(text: str) -> str | None:
    """The relation a 42P01 message names ('relation "x" does not exist')."""
    start = text.find('relation "')
    if start < 0:
        return None
    rest = text[start + len('relation "'):]
    end = rest.find('"')
    return rest[:end] if end > 0 else None


_DENIED_TABLE = re.compile(
    r'(?:permission denied for (?:table|relation|view)|policy for relation) "?([A-Za-z0-9_$.]+)"?'
)


def denied_table(text: str) -> str | None:
    """The table a 42501 / 42P17 message names ('permission denied for table x', '... policy for relation "x"')."""
    match = _DENIED_TABLE.search(text)
    return match.group(1) if match else None


async def tables_in_catalogue(dsn: str, tables: list[tuple[str, str]], deadline: float) -> list[bool]:
    """Whether each (schema, table) is in the database's catalogue (to_regclass), on a connection of its own that
    is closed before returning; raises the driver's error (or TimeoutError at `deadline`, event-loop time)."""
    loop = asyncio.get_running_loop()

    def remaining() -> float:
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError
        return left

    async with asyncio.timeout_at(deadline):
        conn = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, prepare_threshold=None, connect_timeout=max(2, math.ceil(remaining())),
            application_name="pam-monitor",
        )
        try:
            async with conn.transaction():
                await conn.execute(SQL_SET_TIMEOUT, (str(max(1, int(remaining() * 900))),))
                cur = await conn.execute(SQL_TABLES, ([s for s, _ in tables], [t for _, t in tables]))
                rows = await cur.fetchall()
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
    present = {int(ordinal): bool(found) for ordinal, found, _ in rows}
    return [present.get(i + 1, False) for i in range(len(tables))]
