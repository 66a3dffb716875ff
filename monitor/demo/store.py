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
from monitor.demo.schema import (
    APP_ROLE,
    DEMO_SCHEMA,
    SCHEMA_MARKER,
    SEED_TABLES,
    SETTINGS_TABLE,
    database_faults,
    role_schema,
    seed_schema,
)

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


async def apply_schema(conn: psycopg.AsyncConnection[Any], schema: str = "public") -> None:
    """Run seed_schema(schema) in one transaction on an open connection."""
    async with conn.transaction():
        for statement in seed_schema(schema):
            await conn.execute(statement)


async def apply_role_schema(conn: psycopg.AsyncConnection[Any], schema: str = "public") -> None:
    """Run role_schema(schema) (grants and policies for `authenticated`) in one transaction on an open connection."""
    async with conn.transaction():
        for statement in role_schema(schema):
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
    """Create whatever is missing of the seed schema in `public`, the role `authenticated`, its grants and policies
    at `dsn`: for a cluster the demo (or a test) created itself, never for somebody's database (see
    prepare_own_schema).

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


async def _may_act_as(conn: psycopg.AsyncConnection[Any], role: str) -> str | None:
    """None when `role` exists and the connected user may SET ROLE to it; else why not (one clause)."""
    row = await (await conn.execute(
        "SELECT current_user, EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s), "
        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)", (role,))).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    user, exists, superuser = str(row[0]), bool(row[1]), bool(row[2])
    if not exists:
        return f"the role {role!r} does not exist in that database's cluster"
    if superuser:
        return None
    member = await (await conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,))).fetchone()
    if member is not None and member[0]:
        return None
    return f"{user!r} is not a member of the role {role!r}"


async def prepare_own_schema(dsn: str, *, schema: str = DEMO_SCHEMA, role: str = APP_ROLE) -> str | None:
    """Create the demo's own schema in a database it did not create, with the seed tables inside it; return None
    when the as-role check can run (grants and policies for `role` made on the schema's own tables), else why not.

    Nothing outside `schema` is created or changed: no role, no membership, no grant on anything else. A schema of
    that name is refused unless it carries SCHEMA_MARKER (left over from a demo that was killed: then it is
    dropped and made anew). Everything runs in one transaction, so a failure leaves the database as it was.
    Raises DemoDatabaseError with one line saying what to do.
    """
    try:
        conn = await _connect(dsn)
    except psycopg.Error as exc:
        raise DemoDatabaseError(f"cannot connect to the --database-url database: {_one_line(exc)}") from None
    try:
        found = await (await conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (schema,))).fetchone()
        if found is not None and found[0] != SCHEMA_MARKER:
            raise DemoDatabaseError(
                f"that database already has a schema {schema!r} that pam-monitor demo did not create; the demo "
                "refuses to touch it (use another database, or rename that schema)")
        why_not = await _may_act_as(conn, role)
        name = sql.Identifier(schema)
        async with conn.transaction():
            if found is not None:
                await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(name))
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(name))
            await conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(name, sql.Literal(SCHEMA_MARKER)))
            for statement in seed_schema(schema):
                await conn.execute(statement)
            if why_not is None:
                for statement in role_schema(schema):
                    await conn.execute(statement)
    except psycopg.Error as exc:
        raise DemoDatabaseError(f"cannot set up the demo's schema {schema!r}: {_one_line(exc)}; connect as a user "
                                "that may create schemas in that database (CREATE on the database)") from None
    finally:
        await conn.close()
    log.info("demo_db.own_schema_created", schema=schema, as_role=why_not is None)
    return why_not


async def drop_own_schema(dsn: str, *, schema: str = DEMO_SCHEMA) -> None:
    """Drop the demo's own schema (and only when it carries SCHEMA_MARKER): the demo's exit."""
    conn = await _connect(dsn)
    try:
        async with conn.transaction():
            found = await (await conn.execute(
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
                (schema,))).fetchone()
            if found is not None and found[0] == SCHEMA_MARKER:
                await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    finally:
        await conn.close()
    log.info("demo_db.own_schema_dropped", schema=schema)


def _one_line(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    text = getattr(diag, "message_primary", None) or str(exc) or exc.__class__.__name__
    return " ".join(str(text).split())


class PgSettingsStore:
    """The demo's SettingsStore on PostgreSQL: one reused connection, every statement parameterised.

    `drop_table()` really drops `user_settings` of `schema`, so the `db` probe and the backend's HTTP 500 path see
    it; `restore()` recreates it. get/put on a dropped table raise MissingRelationError. Every statement names
    `schema`, so nothing outside it is touched. `role_faults` False (no usable role `authenticated`) refuses the
    faults that need one.
    """

    has_database = True

    def __init__(self, dsn: str, *, schema: str = "public", role_faults: bool = True) -> None:
        self._dsn = dsn
        self.schema = schema
        self.role_faults = role_faults
        self._table = sql.Identifier(schema, SETTINGS_TABLE)
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

    async def _run(self, query: sql.Composed, params: tuple[Any, ...]) -> dict[str, Any] | None:
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
        row = await self._run(sql.SQL("SELECT settings FROM {} WHERE user_id = %s").format(self._table), (user_id,))
        return None if row is None else dict(row["settings"])

    async def put(self, user_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Merge `settings` into a user's stored settings (insert when none); return what is stored."""
        voice = settings.get("voice_enabled")
        voice_enabled = voice if isinstance(voice, bool) else None
        row = await self._run(
            sql.SQL("""INSERT INTO {} AS stored (user_id, settings, voice_enabled)
               VALUES (%s, %s, coalesce(%s, true))
               ON CONFLICT (user_id) DO UPDATE
               SET settings = stored.settings || EXCLUDED.settings,
                   voice_enabled = coalesce(%s, stored.voice_enabled),
                   updated_at = now()
               RETURNING settings""").format(self._table),
            (user_id, Jsonb(settings), voice_enabled, voice_enabled),
        )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return dict(row["settings"])

    async def drop_table(self) -> None:
        """Drop `user_settings` for real (the `drop_table` fault)."""
        async with self._lock:
            conn = await self._connection()
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table))
        log.info("demo_db.table_dropped", table=SETTINGS_TABLE, schema=self.schema)

    async def apply_fault(self, name: str) -> None:
        """Run the DDL of one of database_faults (revoke a grant, add a recursive policy) in one transaction."""
        if not self.role_faults:
            raise DemoDatabaseError(f"the {name} fault needs the role {APP_ROLE}, which this demo may not use on "
                                    "this database (see the line the demo printed at start)")
        async with self._lock:
            conn = await self._connection()
            async with conn.transaction():
                for statement in database_faults(self.schema)[name]:
                    await conn.execute(statement)
        log.info("demo_db.fault_applied", fault=name)

    async def restore(self) -> None:
        """Recreate whatever the faults removed or changed (SEED_SCHEMA and ROLE_SCHEMA are idempotent)."""
        async with self._lock:
            conn = await self._connection()
            await apply_schema(conn, self.schema)
            if self.role_faults:
                await apply_role_schema(conn, self.schema)
        log.info("demo_db.schema_restored", table=SETTINGS_TABLE, schema=self.schema)

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
    "drop_own_schema",
    "ensure_app_role",
    "ensure_schema",
    "prepare_own_schema",
]
