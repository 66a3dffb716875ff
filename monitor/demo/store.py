"""The demo backend's settings store on a real PostgreSQL, and the seed schema shared with the tests."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from probes._pg import is_stale_connection

log = structlog.get_logger("pam_monitor.demo_db")

SEED_TABLES: tuple[str, ...] = (
    "user_settings",
    "affiliate_sales",
    "user_wishlists",
    "marketplace_listings",
    "group_trip_participants",
)
"""The five tables of the seed incident, in the order the example config lists them."""

SETTINGS_TABLE = "user_settings"

SEED_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS public.user_settings (
        user_id text PRIMARY KEY,
        settings jsonb NOT NULL DEFAULT '{}'::jsonb,
        voice_enabled boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    "ALTER TABLE public.user_settings ENABLE ROW LEVEL SECURITY",
    """CREATE TABLE IF NOT EXISTS public.affiliate_sales (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id text NOT NULL,
        amount_cents integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "ALTER TABLE public.affiliate_sales ENABLE ROW LEVEL SECURITY",
    """CREATE TABLE IF NOT EXISTS public.user_wishlists (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id text NOT NULL,
        item text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "ALTER TABLE public.user_wishlists ENABLE ROW LEVEL SECURITY",
    """CREATE TABLE IF NOT EXISTS public.marketplace_listings (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        seller_id text NOT NULL,
        title text NOT NULL,
        price_cents integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "ALTER TABLE public.marketplace_listings ENABLE ROW LEVEL SECURITY",
    """CREATE TABLE IF NOT EXISTS public.group_trip_participants (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        trip_id text NOT NULL,
        user_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "ALTER TABLE public.group_trip_participants ENABLE ROW LEVEL SECURITY",
)
"""Idempotent DDL for the seed's five tables, each with row-level security enabled (run in order)."""


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


async def ensure_schema(dsn: str) -> None:
    """Create whatever is missing of the seed schema in the database at `dsn` (safe to run repeatedly)."""
    conn = await _connect(dsn)
    try:
        await apply_schema(conn)
    finally:
        await conn.close()
    log.info("demo_db.schema_ensured", tables=len(SEED_TABLES))


def _missing_relation(table: str) -> Exception:
    # monitor.demo owns the exception; imported at call time so the tests can use SEED_SCHEMA without Starlette.
    from monitor.demo.app import MissingRelationError

    return MissingRelationError(table)


class PgSettingsStore:
    """The demo's SettingsStore on PostgreSQL: one reused connection, every statement parameterised.

    `drop_table()` really drops `user_settings`, so the `db` probe and the backend's HTTP 500 path see it;
    `restore()` recreates it. get/put on a dropped table raise `monitor.demo.MissingRelationError`.
    """

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
                    raise _missing_relation(SETTINGS_TABLE) from None
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
        """Store (insert or replace) a user's settings; return what is stored."""
        voice = settings.get("voice_enabled")
        voice_enabled = voice if isinstance(voice, bool) else None
        row = await self._run(
            """INSERT INTO public.user_settings (user_id, settings, voice_enabled)
               VALUES (%s, %s, coalesce(%s, true))
               ON CONFLICT (user_id) DO UPDATE
               SET settings = EXCLUDED.settings,
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

    async def restore(self) -> None:
        """Recreate whatever the faults removed (SEED_SCHEMA is idempotent)."""
        async with self._lock:
            conn = await self._connection()
            await apply_schema(conn)
        log.info("demo_db.schema_restored", table=SETTINGS_TABLE)

    async def aclose(self) -> None:
        """Close the connection (the store reconnects if used again)."""
        async with self._lock:
            await self._discard()
