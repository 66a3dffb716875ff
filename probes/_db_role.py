"""The db prober's `as_role` part: read every required table the way the application's users do, then roll back.

In ONE transaction that is always rolled back (so it is safe behind PgBouncer in transaction mode: no session
state survives it): `SET LOCAL ROLE <role>`, `request.jwt.claims` and the legacy `request.jwt.claim.sub` /
`request.jwt.claim.role` settings as PostgREST sets them, then `SELECT 1 FROM <table> LIMIT 1` for each table in
its own savepoint, so one refused table does not hide the others. SQLSTATE 42501 is `permission_denied`, 42P17
(infinite recursion in a row-level security policy) is `policy_error`, each naming its table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from monitor.core.config import split_table
from monitor.core.results import Outcome
from monitor.core.secrets import Redactor
from probes import _pg

DENIED = {"42501": Outcome.PERMISSION_DENIED, "42P17": Outcome.POLICY_ERROR}
_ROLE_REFUSED = ("42501", "22023", "42704")  # not allowed to switch, or no such role
_SET_CLAIMS = (
    "SELECT set_config('request.jwt.claims', %s, true), set_config('request.jwt.claim.sub', %s, true), "
    "set_config('request.jwt.claim.role', %s, true)"
)


@dataclass(frozen=True, slots=True)
class RoleReport:
    """What the role could read: tables refused (table -> (sqlstate, server message)), or why it never got to."""

    role: str
    readable: tuple[str, ...]
    denied: Mapping[str, tuple[str, str]]
    role_error: tuple[str, str] | None = None  # (sqlstate, message) when SET ROLE itself failed


async def read_as_role(
    conn: psycopg.AsyncConnection[Any],
    role: str,
    claims: Mapping[str, Any],
    tables: Sequence[str],
    timeout_ms: str,
    hidden: Redactor,
) -> RoleReport:
    """Read each of `tables` as `role` with `claims`, in a transaction that is rolled back whatever happens."""
    denied: dict[str, tuple[str, str]] = {}
    readable: list[str] = []
    role_error: tuple[str, str] | None = None
    sub = str(claims.get("sub", ""))
    async with conn.transaction(force_rollback=True):
        await conn.execute(_pg.SQL_SET_TIMEOUT, (timeout_ms,))
        try:
            async with conn.transaction():  # a savepoint, so a refused SET ROLE leaves the transaction usable
                await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        except psycopg.Error as exc:
            if exc.sqlstate not in _ROLE_REFUSED:
                raise
            role_error = (exc.sqlstate or "", _pg.error_text(exc, hidden))
        if role_error is None:
            await conn.execute(_SET_CLAIMS, (json.dumps(dict(claims), default=str), sub, role))
            for name in tables:
                statement = sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(*split_table(name)))
                try:
                    async with conn.transaction():
                        await conn.execute(statement)
                except psycopg.Error as exc:
                    if exc.sqlstate not in DENIED:
                        raise
                    denied[name] = (exc.sqlstate or "", _pg.error_text(exc, hidden))
                else:
                    readable.append(name)
    return RoleReport(role, tuple(readable), denied, role_error)


def describe(report: RoleReport, who: str) -> tuple[Outcome, str, dict[str, Any]] | None:
    """(outcome, sentence, details) when the role could not read everything; None when it could."""
    if report.role_error is not None:
        state, text = report.role_error
        return (Outcome.DB_ERROR,
                f"cannot switch to role {report.role} ({text}, SQLSTATE {state}); the monitor's database user "
                f"needs GRANT {report.role} TO <that user>, as PostgREST's authenticator has",
                {"sqlstate": state, "phase": "as_role", "as_role": report.role})
    if not report.denied:
        return None
    first, (state, _) = next(iter(report.denied.items()))
    total = len(report.readable) + len(report.denied)
    refused = "; ".join(f"{table}: {text} ({code})" for table, (code, text) in report.denied.items())
    message = (f"as role {report.role}{who}: {refused}; {len(report.readable)} of {total} required tables "
               "readable")
    details = {"table": first, "sqlstate": state, "phase": "as_role", "as_role": report.role,
               "denied": {table: code for table, (code, _) in report.denied.items()}}
    return DENIED[state], message, details
