"""The demo's PostgREST stand-in: `GET /rest/v1/<table>` answered from a schema cache, reloaded only on NOTIFY.

Like PostgREST, the table list is read from the database's catalogue at start and again only when a
`NOTIFY pgrst, 'reload schema'` (or an empty `NOTIFY pgrst`) arrives on a LISTEN connection: a table created
without that notification is in the database and not in the cache, and the API answers 404 PGRST205 for it.
Only `schema`'s tables are cached; the answers are PostgREST's shapes (200 `[]` for a known table with
`limit=0`, 404 PGRST205 for an unknown one), not its data.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import structlog
from psycopg import sql
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = structlog.get_logger("pam_monitor.demo_postgrest")

CHANNEL = "pgrst"
"""The channel PostgREST listens on (its `db-channel` default)."""

RELOAD_PAYLOADS = frozenset({"", "reload schema"})
"""The payloads on CHANNEL that make PostgREST reload its schema cache."""

FAULT_TABLE = "monitor_fault_table"
"""The table the demo's `postgrest` check requires and the `stale_schema_cache` fault drops and recreates."""

_RELOAD_WAIT_S = 10.0  # a reload is one catalogue query on a local cluster; past this something is wrong
_SQL_TABLES = ("SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
               "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')")


class SchemaCache:
    """The table names of one schema as PostgREST would cache them, kept fresh only by NOTIFY on CHANNEL."""

    def __init__(self, dsn: str, schema: str = "public") -> None:
        self.dsn = dsn
        self.schema = schema
        self.tables: frozenset[str] = frozenset()
        self.loads = 0
        """How many times the cache was loaded (the fault waits for a reload by watching it grow)."""
        self._listener: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Condition()

    async def start(self) -> None:
        """Load the cache and LISTEN on CHANNEL (the load follows the LISTEN, so no notification is missed)."""
        self._listener = await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, connect_timeout=10, application_name="pam-monitor-demo-postgrest")
        await self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        await self._load()
        self._task = asyncio.get_running_loop().create_task(self._listen(self._listener))

    async def _load(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            rows = await (await conn.execute(_SQL_TABLES, (self.schema,))).fetchall()
        async with self._loaded:
            self.tables = frozenset(str(row[0]) for row in rows)
            self.loads += 1
            self._loaded.notify_all()
        log.info("demo_postgrest.schema_cache_loaded", schema=self.schema, tables=len(self.tables), loads=self.loads)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for note in conn.notifies():
            if note.payload in RELOAD_PAYLOADS:
                try:
                    await self._load()
                except psycopg.Error as exc:  # PostgREST keeps its old cache when a reload fails; so does the demo
                    log.warning("demo_postgrest.reload_failed", error=exc.__class__.__name__)

    async def wait_reload(self, after: int) -> None:
        """Wait (bounded) until the cache has been loaded more than `after` times."""
        async with asyncio.timeout(_RELOAD_WAIT_S), self._loaded:
            await self._loaded.wait_for(lambda: self.loads > after)

    async def aclose(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await self._task
        if self._listener is not None:
            await self._listener.close()


async def _notify(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(sql.SQL("NOTIFY {}, 'reload schema'").format(sql.Identifier(CHANNEL)))


async def create_fault_table(dsn: str, schema: str = "public") -> None:
    """Create FAULT_TABLE in `schema` when missing (before the cache's first load)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        await conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, note text)").format(
            sql.Identifier(schema, FAULT_TABLE)))


async def make_cache_stale(cache: SchemaCache) -> None:
    """The `stale_schema_cache` fault: drop FAULT_TABLE and NOTIFY (the cache reloads without it), then recreate
    it without NOTIFY: the database has the table, the cache does not."""
    table = sql.Identifier(cache.schema, FAULT_TABLE)
    async with await psycopg.AsyncConnection.connect(cache.dsn, autocommit=True, connect_timeout=10) as conn:
        before = cache.loads
        async with conn.transaction():
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            await _notify(conn)
        await cache.wait_reload(before)
        await conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, note text)").format(table))


async def reload_schema(cache: SchemaCache) -> None:
    """Heal: `NOTIFY pgrst, 'reload schema'`, as an operator would, and wait for the reload."""
    async with await psycopg.AsyncConnection.connect(cache.dsn, autocommit=True, connect_timeout=10) as conn:
        before = cache.loads
        await _notify(conn)
        await cache.wait_reload(before)


def rest_endpoint(cache: SchemaCache) -> Any:
    """The Starlette endpoint of `GET /rest/v1/{table}`: 200 `[]` for a cached table, 404 PGRST205 otherwise."""

    async def rest_table(request: Request) -> Response:
        table = request.path_params["table"]
        if table in cache.tables:
            return JSONResponse([])
        return JSONResponse({"code": "PGRST205", "details": None, "hint": None,
                             "message": f"Could not find the table '{cache.schema}.{table}' in the schema cache"},
                            status_code=404)

    return rest_table


__all__ = ["CHANNEL", "FAULT_TABLE", "RELOAD_PAYLOADS", "SchemaCache", "create_fault_table", "make_cache_stale",
           "reload_schema", "rest_endpoint"]
