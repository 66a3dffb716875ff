"""A stand-in for Supabase's gateway + PostgREST answering `GET /rest/v1/<table>` with the documented errors.

Bodies follow PostgREST's docs/references/errors.rst: `{"code", "details", "hint", "message"}`; a missing table
is 404 `PGRST205` "Could not find the table 'public.x' in the schema cache" (new) or 404 `42P01`
`relation "public.x" does not exist` (old); JWT failures are 401 `PGRST301`/`PGRST302`/`PGRST303`; an
unexposed schema in Accept-Profile is 406 `PGRST106`. With `gateway_key` set, a Kong-like gateway first
demands the `apikey` header: 401 "No API key found in request" / "Invalid API key", as Supabase answers.

With `dsn` set it caches its schema as PostgREST does: the tables of its exposed schemas (the keys of `tables`)
are read from that database's catalogue on the first request, and read again only when `NOTIFY pgrst,
'reload schema'` arrives (it LISTENs on channel `pgrst` with psycopg, in the server's event loop); `reloads`
counts the reloads, so a test can wait for one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ErrorStyle = Literal["new", "old"]


def pgrst_error(code: str, message: str, *, details: str | None = None, hint: str | None = None) -> dict[str, object]:
    """A PostgREST error body (key order as PostgREST 12 sends it)."""
    return {"code": code, "details": details, "hint": hint, "message": message}


@dataclass
class FakePostgrest:
    """The fake's state; tests change it between probe runs and read what the fake received."""

    tables: dict[str, set[str]] = field(default_factory=lambda: {"public": set()})
    style: ErrorStyle = "new"
    gateway_key: str | None = None
    jwt: str | None = None
    """When set, Authorization must be `Bearer <jwt>` (else PGRST301); without the header, PGRST302."""
    status_override: dict[str, tuple[int, dict[str, object]]] = field(default_factory=dict)
    """table -> (status, JSON body) answered instead of the normal logic."""
    delay: float = 0.0
    received: list[dict[str, str]] = field(default_factory=list)
    dsn: str | None = None
    """When set, `tables` is a schema cache of this database's catalogue (see the module docstring)."""
    reloads: int = 0
    _listener: asyncio.Task[None] | None = None
    _starting: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _load(self) -> None:
        # A connection of its own: the listening one is busy waiting for notifications.
        assert self.dsn is not None
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND n.nspname = ANY(%s)",
                (list(self.tables),))
            rows = await cur.fetchall()
        cached: dict[str, set[str]] = {schema: set() for schema in self.tables}
        for schema, table in rows:
            cached[schema].add(table)
        self.tables = cached
        self.reloads += 1

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            async for note in conn.notifies():
                if note.payload in ("", "reload schema"):  # PostgREST reloads on an empty payload too
                    await self._load()
        finally:
            await conn.close()

    async def _ensure_cache(self) -> None:
        if self.dsn is None or self._listener is not None:
            return
        async with self._starting:  # the probe asks for its tables at once: start listening once
            if self._listener is not None:
                return
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
            await conn.execute("LISTEN pgrst")
            await self._load()
            self._listener = asyncio.get_running_loop().create_task(self._listen(conn))

    def app(self) -> Starlette:
        """The ASGI app serving `/rest/v1/{table}`."""
        return Starlette(routes=[Route("/rest/v1/{table}", self._table, methods=["GET", "HEAD"])])

    async def _table(self, request: Request) -> Response:
        table = request.path_params["table"]
        self.received.append({"table": table, "query": str(request.query_params), **dict(request.headers)})
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.gateway_key is not None:
            key = request.headers.get("apikey")
            if key is None:
                return JSONResponse({"message": "No API key found in request",
                                     "hint": "No `apikey` request header or url param was found."}, status_code=401)
            if key != self.gateway_key:
                return JSONResponse({"message": "Invalid API key",
                                     "hint": "Double check your Supabase `anon` or `service_role` API key."},
                                    status_code=401)
        if self.jwt is not None:
            auth = request.headers.get("authorization")
            if auth is None:
                return JSONResponse(pgrst_error("PGRST302", "Anonymous access is disabled"), status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            if auth != f"Bearer {self.jwt}":
                return JSONResponse(pgrst_error("PGRST301", "JWSError JWSInvalidSignature"), status_code=401,
                                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        await self._ensure_cache()
        if table in self.status_override:
            status, body = self.status_override[table]
            return JSONResponse(body, status_code=status)
        schema = request.headers.get("accept-profile", "public")
        if schema not in self.tables:
            exposed = ", ".join(sorted(self.tables))
            return JSONResponse(pgrst_error("PGRST106", f"The schema must be one of the following: {exposed}"),
                                status_code=406)
        if table not in self.tables[schema]:
            if self.style == "old":
                body = pgrst_error("42P01", f'relation "{schema}.{table}" does not exist')
            else:
                others = sorted(self.tables[schema])
                hint = f"Perhaps you meant the table '{schema}.{others[0]}'" if others else None
                body = pgrst_error("PGRST205", f"Could not find the table '{schema}.{table}' in the schema cache",
                                   hint=hint)
            return JSONResponse(body, status_code=404)
        return Response("[]", status_code=200, media_type="application/json",
                        headers={"Content-Range": "*/*", "Content-Profile": schema})
