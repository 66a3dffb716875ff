"""Where the demo backend keeps user settings: the store protocol, an in-memory store and one on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from monitor.core.errors import PamMonitorError
from monitor.core.pgconn import is_stale_connection
from monitor.demo.schema import APP_ROLE, DATABASE_FAULTS, ROLE_SCHEMA, SEED_SCHEMA, SEED_TABLES, SETTINGS_TABLE

log = structlog.get_logger("pam_monitor.demo_db")


class MissingRelationError(Exception):
    """The settings table is gone (what PostgreSQL reports as SQLSTATE 42P01)."""

    def __init__(self, table: str) -> None:
        super().__init__(f'relation "{table}" does not exist')
        self.table = table


class DemoDatabaseError(PamMonitorError):
    """The demo's database lacks something the demo cannot create itself; the message says what to run."""


class SettingsStore(Protocol):
    """Where the demo keeps user settings. get/put raise MissingRelationError while the table is dropped."""

    has_database: bool
    """Whether faults that change the database itself (DATABASE_FAULTS) can be applied."""

    async def get(self, user_id: str) -> dict[str, Any] | None:
        """The stored settings of a user, or None if there are none."""
        ...

    async def put(self, user_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Merge `settings` into a user's stored settings and return what is now stored."""
        ...

    async def drop_table(self) -> None:
        """Make the settings table disappear (the seed incident)."""
        ...

    async def apply_fault(self, name: str) -> None:
        """Run one of DATABASE_FAULTS (only when `has_database`)."""
        ...

    async def restore(self) -> None:
        """Bring the settings table back (empty or as before, as the store can)."""
        ...


class MemorySettingsStore:
    """The default SettingsStore: a dict, and a flag saying whether its 'table' exists."""

    has_database = False

    def __init__(self, table: str = SETTINGS_TABLE) -> None:
        self.table = table
        self._rows: dict[str, dict[str, Any]] = {}
        self._dropped = False

    async def get(self, user_id: str) -> dict[str, Any] | None:
        """The stored settings of a user, or None."""
        if self._dropped:
            raise MissingRelationError(self.table)
        row = self._rows.get(user_id)
        return dict(row) if row is not None else None

    async def put(self, user_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Merge `settings` into a user's stored settings."""
        if self._dropped:
            raise MissingRelationError(self.table)
        merged = {**self._rows.get(user_id, {}), **settings}
        self._rows[user_id] = merged
        return dict(merged)

    async def drop_table(self) -> None:
        """Lose every row and refuse reads and writes until restore()."""
        self._dropped = True
        self._rows.clear()

    async def apply_fault(self, name: str) -> None:
        """There is no database to change: always refused."""
        raise DemoDatabaseError(f"the {name} fault changes the database, and this demo runs without one")

    async def restore(self) -> None:
        """Recreate the (empty) table."""
        self._dropped = False


async def _connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    # No server-side prepared statements: the DSN may point at PgBouncer/Supavisor in transaction mode.
    return await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, prepare_threshold=None, connect_timeout=10, application_name="pam-monitor-demo"
    )


async def apply_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    """Run SEED_SCHEMA in one transaction on an open connection."""
    async with conn.transaction():
        for statement in SEED_SCHEMA:
            await conn.execute(statement)


async def apply_role_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    """Run ROLE_SCHEMA (grants and policies for `authenticated`) in one transaction on an open connection."""
    async with conn.transaction():
        for statement in ROLE_SCHEMA:
            await conn.execute(statement)


def _needs(user: str, what: str) -> str:
    return (f"the demo needs a role {APP_ROLE!r} that {user!r} can SET ROLE to ({what}); as a superuser run: "
            f"CREATE ROLE {APP_ROLE} NOLOGIN; GRANT {APP_ROLE} TO \"{user}\";  then start the demo again")


async def ensure_app_role(conn: psycopg.AsyncConnection[Any]) -> None:
    """Make sure the role `authenticated` exists and the connected user may SET ROLE to it.

    Created when missing (roles are cluster-wide: a concurrent creator is not an error). Raises DemoDatabaseError
    saying which statements an administrator must run when the connected user is not allowed to.
    """
    row = await (await conn.execute(
        "SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
        "EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", (APP_ROLE,))).fetchone()
    assert row is not None
    user, superuser, exists = str(row[0]), bool(row[1]), bool(row[2])
    if not exists:
        try:
            await conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(APP_ROLE)))
            log.info("demo_db.role_created", role=APP_ROLE)
        except (pg_errors.DuplicateObject, pg_errors.UniqueViolation):
            pass  # created meanwhile by someone else
        except pg_errors.InsufficientPrivilege:
            raise DemoDatabaseError(_needs(user, "it does not exist and this user may not create roles")) from None
    if superuser:
        return
    member = await (await conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (APP_ROLE,))).fetchone()
    if member is not None and member[0]:
        return
    try:
        await conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(APP_ROLE), sql.Identifier(user)))
    except pg_errors.InsufficientPrivilege:
        raise DemoDatabaseError(_needs(user, "this user is not a member of it")) from None


async def ensure_schema(dsn: str) -> None:
    """Create whatever is missing of the seed schema, the role `authenticated`, its grants and policies at `dsn`.

    Safe to run repeatedly; raises DemoDatabaseError when the connected user lacks the rights to do so.
    """
    conn = await _connect(dsn)
    try:
        await ensure_app_role(conn)
        try:
            await apply_schema(conn)
            await apply_role_schema(conn)
        except pg_errors.InsufficientPrivilege as exc:
            raise DemoDatabaseError(
                f"the demo cannot set up its tables, grants and policies: {exc.diag.message_primary}; "
                "connect as the owner of the seed tables (or a superuser)") from None
    finally:
        await conn.close()
    log.info("demo_db.schema_ensured", tables=len(SEED_TABLES), role=APP_ROLE)


class PgSettingsStore:
    """The demo's SettingsStore on PostgreSQL: one reused connection, every statement parameterised.

    `drop_table()` really drops `user_settings`, so the `db` probe and the backend's HTTP 500 path see it;
    `restore()` recreates it. get/put on a dropped table raise MissingRelationError.
    """

    has_database = True

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                await conn.close()
            conn = await _connect(self._dsn)
            self._conn = conn
        return conn

    async def _discard(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _run(self, query: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        """Execute one parameterised statement and return its first row; one retry on a dead connection."""
        async with self._lock:
            for attempt in (1, 2):
                conn = await self._connection()
                try:
                    cur = conn.cursor(row_factory=dict_row)
                    await cur.execute(query, params)
                    return await cur.fetchone()
                except pg_errors.UndefinedTable:
                    raise MissingRelationError(SETTINGS_TABLE) from None
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    await self._discard()
                    # A connection killed while idle (server restart, pg_terminate_backend) is not an error
                    # worth a 500: reconnect once.
                    if attempt == 2 or not is_stale_connection(exc):
                        raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def get(self, user_id: str) -> dict[str, Any] | None:
        """The stored settings of a user, or None when there are none."""
        row = await self._run("SELECT settings FROM public.user_settings WHERE user_id = %s", (user_id,))
        return None if row is None else dict(row["settings"])

    async def put(self, user_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Merge `settings` into a user's stored settings (insert when none); return what is stored."""
        voice = settings.get("voice_enabled")
        voice_enabled = voice if isinstance(voice, bool) else None
        row = await self._run(
            """INSERT INTO public.user_settings (user_id, settings, voice_enabled)
               VALUES (%s, %s, coalesce(%s, true))
               ON CONFLICT (user_id) DO UPDATE
               SET settings = public.user_settings.settings || EXCLUDED.settings,
                   voice_enabled = coalesce(%s, public.user_settings.voice_enabled),
                   updated_at = now()
               RETURNING settings""",
            (user_id, Jsonb(settings), voice_enabled, voice_enabled),
        )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return dict(row["settings"])

    async def drop_table(self) -> None:
        """Drop `user_settings` for real (the `drop_table` fault)."""
        async with self._lock:
            conn = await self._connection()
            await conn.execute("DROP TABLE IF EXISTS public.user_settings")
        log.info("demo_db.table_dropped", table=SETTINGS_TABLE)

    async def apply_fault(self, name: str) -> None:
        """Run the DDL of one of DATABASE_FAULTS (revoke a grant, add a recursive policy) in one transaction."""
        async with self._lock:
            conn = await self._connection()
            async with conn.transaction():
                for statement in DATABASE_FAULTS[name]:
                    await conn.execute(statement)
        log.info("demo_db.fault_applied", fault=name)

    async def restore(self) -> None:
        """Recreate whatever the faults removed or changed (SEED_SCHEMA and ROLE_SCHEMA are idempotent)."""
        async with self._lock:
            conn = await self._connection()
            await apply_schema(conn)
            await apply_role_schema(conn)
        log.info("demo_db.schema_restored", table=SETTINGS_TABLE)

    async def aclose(self) -> None:
        """Close the connection (the store reconnects if used again)."""
        async with self._lock:
            await self._discard()


__all__ = [
    "DemoDatabaseError",
    "MemorySettingsStore",
    "MissingRelationError",
    "PgSettingsStore",
    "SettingsStore",
    "apply_role_schema",
    "apply_schema",
    "ensure_app_role",
    "ensure_schema",
]
