"""The `db` prober's implementation: connect, SELECT 1, tables, columns, RLS and a canary write, all bounded.

psycopg 3 (async) with autocommit, `prepare_threshold=None` and only transaction-local settings, so a run
works unchanged through PgBouncer/Supavisor in transaction mode (bench/db_driver.py has the driver figures).
Every step gets the remaining deadline: a server-side `statement_timeout` (set with `set_config(..., true)`,
i.e. SET LOCAL) that fires first and a client-side `asyncio.timeout_at` behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets as _secrets
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from monitor.core.config import DbCheck, split_table
from monitor.core.results import Outcome, ProbeResult
from probes import _db_migrations, _db_role, _pg
from probes._db_report import Run, failure, ok, schema_failure
from probes.deps import Deps
from probes.identity import SignInFailed, credential_for

log = structlog.get_logger("pam_monitor.probe.db")

APPLICATION_NAME = "pam-monitor"


def _statement_timeout_ms(remaining: float) -> str:
    # The server cancels the statement slightly before the client-side deadline, leaving the connection usable.
    return str(max(1, int((remaining - min(0.1, remaining * 0.05)) * 1000)))


@dataclass
class _Pooled:
    """The reused connection of a `pool: true` check, kept in deps.resources[check.name]."""

    conn: psycopg.AsyncConnection[Any] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def aclose(self) -> None:
        """Close the connection (deps.on_close)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            await _close(conn)


async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


async def probe(check: DbCheck, deps: Deps, deadline: float) -> ProbeResult:
    """One round trip to the check's database, finished by `deadline` (event-loop time); never raises for a
    broken target."""
    target = deps.targets.get(check.target)
    if target is None or target.dsn is None:
        return ProbeResult(Outcome.INTERNAL_ERROR, f"target {check.target!r} has no dsn")
    dsn = target.dsn.get_secret_value()
    hidden = _pg.dsn_redactor(dsn)
    try:
        conninfo_to_dict(dsn)
    except psycopg.Error:
        # libpq quotes pieces of a malformed DSN in its message: say nothing more than that it is malformed.
        return ProbeResult(
            Outcome.DB_ERROR,
            "the target's DSN is not a valid PostgreSQL connection string (libpq rejected it)",
            details={"phase": "connect", "sqlstate": None},
        )
    run = Run(loop=asyncio.get_running_loop(), deadline=deadline, hidden=hidden)
    if check.as_role is not None:
        run.claims = {"role": check.as_role}
        if check.identity is not None:
            # Before connecting: a check that cannot get its identity's claims reports that, not the database.
            got = await credential_for(deps, check.identity, deadline)
            if isinstance(got, SignInFailed):
                return got.result(check.identity)
            run.claims = got[1].claims
    started = deps.clock.monotonic()
    try:
        if check.pool:
            return await _pooled_run(check, deps, dsn, run)
        conn = await _connect(dsn, run, deps)
        try:
            return await _round_trip(conn, check, run, deps)
        finally:
            await _close(conn)
    except Exception as exc:
        classified = _pg.classify(exc)
        if classified is None:
            raise
        return failure(check, run, exc, classified, hidden, deps.clock.monotonic() - started)


async def _connect(dsn: str, run: Run, deps: Deps) -> psycopg.AsyncConnection[Any]:
    run.phase = "connect"
    remaining = run.remaining()
    started = deps.clock.monotonic()
    async with asyncio.timeout_at(run.deadline):
        conn = await psycopg.AsyncConnection.connect(
            dsn,
            autocommit=True,
            prepare_threshold=None,
            # libpq's connect_timeout is whole seconds (min 2); the asyncio deadline above is the real bound.
            connect_timeout=max(2, math.ceil(remaining)),
            application_name=APPLICATION_NAME,
        )
    run.phases["connect"] = deps.clock.monotonic() - started
    return conn


async def _pooled_run(check: DbCheck, deps: Deps, dsn: str, run: Run) -> ProbeResult:
    holder = deps.resources.get(check.name)
    if not isinstance(holder, _Pooled):
        holder = _Pooled()
        deps.resources[check.name] = holder
        deps.on_close(holder.aclose)
    async with asyncio.timeout_at(run.deadline):
        await holder.lock.acquire()
    try:
        for attempt in (1, 2):
            conn = holder.conn
            reused = conn is not None and not conn.closed and not conn.broken
            if conn is None or not reused:
                if conn is not None:
                    await _close(conn)
                holder.conn = None
                conn = await _connect(dsn, run, deps)
                holder.conn = conn
            run.details["reused_connection"] = reused
            try:
                return await _round_trip(conn, check, run, deps)
            except Exception as exc:
                # A connection that failed mid-run is in an unknown state: never hand it to the next run.
                holder.conn = None
                await _close(conn)
                if reused and attempt == 1 and _pg.is_stale_connection(exc):
                    # The kept connection died while idle (server restart, pooler recycle,
                    # pg_terminate_backend): that is not the target failing, so retry once on a fresh one.
                    log.info("db.stale_connection_replaced", check=check.name)
                    run.phases.clear()
                    run.tables.clear()
                    run.details.clear()
                    continue
                raise
        raise AssertionError("unreachable: the second attempt returns or raises")
    finally:
        holder.lock.release()


async def _round_trip(
    conn: psycopg.AsyncConnection[Any], check: DbCheck, run: Run, deps: Deps
) -> ProbeResult:
    run.migrations = None
    result = await _checks(conn, check, run, deps)
    return _db_migrations.verdict(result, run.migrations, check.migrations, check.name)


async def _checks(
    conn: psycopg.AsyncConnection[Any], check: DbCheck, run: Run, deps: Deps
) -> ProbeResult:
    names = check.all_tables()
    split = [split_table(name) for name in names]
    run.phase = "query"
    started = deps.clock.monotonic()
    async with asyncio.timeout_at(run.deadline), conn.transaction():
        cur = await conn.execute(_pg.SQL_HELLO, (_statement_timeout_ms(run.remaining()),))
        hello = await cur.fetchone()
        assert hello is not None  # a SELECT without FROM returns exactly one row
        _, one, in_recovery, read_only, pid, version = hello
        if one != 1:
            return ProbeResult(Outcome.DB_ERROR, f"SELECT 1 returned {one!r}", details={"phase": "query"})
        run.details.update(
            in_recovery=bool(in_recovery),
            read_only=bool(in_recovery) or read_only == "on",
            backend_pid=int(pid),
            server_version=str(version),
        )
        rls_off: list[str] = []
        if names:
            cur = await conn.execute(
                _pg.SQL_TABLES, ([s for s, _ in split], [t for _, t in split])
            )
            for ordinal, present, rls in await cur.fetchall():
                name = names[int(ordinal) - 1]
                run.tables[name] = bool(present)
                if present and check.require_rls and not rls:
                    rls_off.append(name)
        missing_tables = [name for name in names if not run.tables.get(name, False)]
        missing_columns: list[str] = []
        wanted = [
            (table, column)
            for table, columns in check.required_columns.items()
            if run.tables.get(table, False)
            for column in columns
        ]
        if wanted:
            nsp, rel = zip(*(split_table(table) for table, _ in wanted), strict=True)
            cur = await conn.execute(
                _pg.SQL_MISSING_COLUMNS, (list(nsp), list(rel), [column for _, column in wanted])
            )
            missing_columns = [
                f"{wanted[int(ordinal) - 1][0]}.{wanted[int(ordinal) - 1][1]}" for (ordinal,) in await cur.fetchall()
            ]
        if check.migrations is not None:
            run.migrations = await _db_migrations.compare(conn, check.migrations)
        present = [(name, parts) for name, parts in zip(names, split, strict=True) if run.tables.get(name)]
        if present and not missing_tables:
            # Read each table (no rows): this is what the application's role meets first, a lock held by a
            # migration (timeout), a missing grant (42501) or a recursive RLS policy (42P17).
            run.touching = present[0][0] if len(present) == 1 else None
            touch = sql.SQL(" UNION ALL ").join(
                sql.SQL("(SELECT FROM {} LIMIT 0)").format(sql.Identifier(*parts)) for _, parts in present
            )
            await conn.execute(touch)
            run.touching = None
    run.phases["query"] = deps.clock.monotonic() - started

    if missing_tables or missing_columns or rls_off:
        return schema_failure(names, missing_tables, missing_columns, rls_off, run)
    if check.as_role is not None and run.claims is not None:
        refused = await _as_role(conn, check, run, deps, names)
        if refused is not None:
            return refused

    if run.details["read_only"] and (not check.canary or check.expect_read_only):
        run.details["canary"] = "skipped (read-only)" if check.canary else "off"
        return ok(names, run, "read-only" + (" (hot standby)" if run.details["in_recovery"] else ""))
    if check.canary:
        problem = await _canary(conn, check, run, deps)
        if problem is not None:
            run.details["canary"] = "mismatch"
            return ProbeResult(Outcome.DB_ERROR, f"canary failed: {problem}", details=dict(run.details),
                               tables=dict(run.tables), phases=dict(run.phases))
        run.details["canary"] = "ok"
    return ok(names, run, None)


async def _canary(conn: psycopg.AsyncConnection[Any], check: DbCheck, run: Run, deps: Deps) -> str | None:
    """Write, read back and delete a random row in one transaction; return what went wrong, if anything."""
    run.phase = "canary"
    started = deps.clock.monotonic()
    key = f"pam-monitor:{_secrets.token_hex(8)}"
    value = _secrets.token_hex(16)
    async with asyncio.timeout_at(run.deadline), conn.transaction():
        await conn.execute(_pg.SQL_SET_TIMEOUT, (_statement_timeout_ms(run.remaining()),))
        if check.canary_table is None:
            table = sql.Identifier(_pg.CANARY_TEMP_TABLE)
            await conn.execute(
                sql.SQL("CREATE TEMP TABLE {} (key text PRIMARY KEY, value text) ON COMMIT DROP").format(table)
            )
        else:
            table = sql.Identifier(*split_table(check.canary_table))
        await conn.execute(sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s)").format(table), (key, value))
        cur = await conn.execute(sql.SQL("SELECT value FROM {} WHERE key = %s").format(table), (key,))
        row = await cur.fetchone()
        await conn.execute(sql.SQL("DELETE FROM {} WHERE key = %s").format(table), (key,))
    run.phases["canary"] = deps.clock.monotonic() - started
    read_back = None if row is None else row[0]
    if read_back is None:
        return "the canary row was not found right after it was written"
    if read_back != value:
        return "the canary value read back differs from the value written"
    return None


async def _as_role(
    conn: psycopg.AsyncConnection[Any], check: DbCheck, run: Run, deps: Deps, names: list[str]
) -> ProbeResult | None:
    """Read every required table as the application's role; the failure result when it cannot."""
    assert check.as_role is not None
    assert run.claims is not None
    run.phase = "as_role"
    started = deps.clock.monotonic()
    async with asyncio.timeout_at(run.deadline):
        report = await _db_role.read_as_role(conn, check.as_role, run.claims, names,
                                             _statement_timeout_ms(run.remaining()), run.hidden)
    run.phases["as_role"] = deps.clock.monotonic() - started
    run.details["as_role"] = check.as_role
    if check.identity is not None:
        run.details["identity"] = check.identity
    who = f" (identity {check.identity})" if check.identity is not None else ""
    found = _db_role.describe(report, who)
    if found is None:
        run.details["readable_as_role"] = len(report.readable)
        return None
    outcome, message, details = found
    log.debug("db.as_role_refused", check=check.name, outcome=outcome.value, tables=list(report.denied))
    return ProbeResult(outcome, message, details={**run.details, **details}, tables=dict(run.tables),
                       phases=dict(run.phases))
