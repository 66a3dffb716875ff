"""The demo's PostgREST stand-in and its own-cluster faults, on real PostgreSQL: the schema cache follows the
catalogue only on NOTIFY pgrst, the answers have PostgREST's shapes, and the faults are refused without a cluster
of the demo's own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from monitor.demo.app import create_demo_app
from monitor.demo.migrations import APPLIED, FAULT_MIGRATION
from monitor.demo.postgrest import FAULT_TABLE, SchemaCache
from monitor.demo.supabase import SupabaseParts, start_supabase_parts
from monitor.server import build_server
from tests.support.poll import until_async
from tests.support.postgres import SeededDb
from tests.support.servers import free_port

SECRET = "demo-secret-for-the-postgrest-tests"


@contextlib.asynccontextmanager
async def served(supabase: SupabaseParts | None) -> AsyncIterator[httpx.AsyncClient]:
    """The demo app (memory settings store) on 127.0.0.1 in this event loop, and a client of it."""
    port = free_port()
    server = build_server(create_demo_app(jwt_secret=SECRET, supabase=supabase), "127.0.0.1", port)
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        await until_async(lambda: server.started or task.done(), what="the demo backend to start")
        assert not task.done(), "the demo backend exited at start"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


def in_catalogue(db: SeededDb, table: str) -> bool:
    with db.connect() as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone()
    return bool(row and row[0])


async def test_cache_follows_the_catalogue_only_on_reload_schema(seeded_db: SeededDb) -> None:
    """A table created after the cache loaded is unknown (404 PGRST205, PostgREST's message) until
    NOTIFY pgrst, 'reload schema'; another payload on the channel does not reload; a known table answers 200 []."""
    cache = SchemaCache(seeded_db.dsn)
    await cache.start()
    try:
        assert True is ("user_settings" in cache.tables)
        seeded_db.execute("CREATE TABLE public.late_table (id int)")
        loads = cache.loads
        seeded_db.execute("NOTIFY pgrst, 'reload config'")
        seeded_db.execute("NOTIFY other_channel, 'reload schema'")
        await asyncio.sleep(0.3)  # gives a wrong reload its chance to happen; the assertion needs none to have
        assert (loads, False) == (cache.loads, "late_table" in cache.tables)
        seeded_db.execute("NOTIFY pgrst, 'reload schema'")
        await cache.wait_reload(loads)
        assert True is ("late_table" in cache.tables)
    finally:
        await cache.aclose()


async def test_stale_schema_cache_fault_and_heal(tmp_path: Path, seeded_db: SeededDb) -> None:
    """stale_schema_cache: the table is in the database's catalogue while the API answers 404 PGRST205 for it;
    healing (DELETE /_faults) makes the API answer 200 [] again. Unknown tables are 404 all along."""
    parts = await start_supabase_parts(seeded_db.dsn, tmp_path / "migrations")
    try:
        async with served(parts) as client:
            ok = await client.get(f"/rest/v1/{FAULT_TABLE}", params={"select": "*", "limit": "0"})
            unknown = await client.get("/rest/v1/no_such_table")
            said = "Could not find the table 'public.no_such_table' in the schema cache"
            assert (200, [], 404, "PGRST205", said) == (
                ok.status_code, ok.json(), unknown.status_code, unknown.json()["code"], unknown.json()["message"])
            (await client.post("/_faults/stale_schema_cache")).raise_for_status()
            stale = await client.get(f"/rest/v1/{FAULT_TABLE}")
            assert (404, "PGRST205", True) == (stale.status_code, stale.json()["code"],
                                               in_catalogue(seeded_db, FAULT_TABLE))
            (await client.delete("/_faults")).raise_for_status()
            assert 200 == (await client.get(f"/rest/v1/{FAULT_TABLE}")).status_code
    finally:
        await parts.aclose()


async def test_unapplied_migration_fault_and_heal(tmp_path: Path, seeded_db: SeededDb) -> None:
    """The demo's migrations are written and recorded as applied; unapplied_migration adds a file with no record,
    healing removes it."""
    directory = tmp_path / "migrations"
    parts = await start_supabase_parts(seeded_db.dsn, directory)
    try:
        with seeded_db.connect() as conn:
            recorded = [r[0] for r in conn.execute(
                "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version").fetchall()]
        assert ([name.split("_")[0] for name in APPLIED], sorted(APPLIED)) == (
            recorded, sorted(p.name for p in directory.iterdir()))
        async with served(parts) as client:
            (await client.post("/_faults/unapplied_migration")).raise_for_status()
            assert True is (directory / FAULT_MIGRATION).is_file()
            (await client.delete("/_faults")).raise_for_status()
            assert sorted(APPLIED) == sorted(p.name for p in directory.iterdir())
    finally:
        await parts.aclose()


async def test_own_cluster_faults_are_refused_without_the_parts() -> None:
    """Without the demo's own cluster (no SupabaseParts: --no-db or --database-url) both faults answer 409 naming
    why, stay off, and /rest/v1 does not exist."""
    async with served(None) as client:
        refused = [await client.post(f"/_faults/{name}") for name in ("unapplied_migration", "stale_schema_cache")]
        assert [409, 409] == [r.status_code for r in refused]
        assert True is all("own throwaway PostgreSQL cluster" in r.json()["detail"] for r in refused)
        assert ([], 404) == ((await client.get("/_faults")).json()["active"],
                             (await client.get(f"/rest/v1/{FAULT_TABLE}")).status_code)


def test_cache_reads_only_its_schema(seeded_db: SeededDb) -> None:
    """The catalogue query the cache runs lists the tables of its schema only (another schema's table is not in
    it), as PostgREST exposes only its configured schemas."""
    seeded_db.execute("CREATE SCHEMA elsewhere")
    seeded_db.execute("CREATE TABLE elsewhere.hidden (id int)")

    async def load() -> frozenset[str]:
        cache = SchemaCache(seeded_db.dsn)
        await cache.start()
        await cache.aclose()
        return cache.tables

    tables = asyncio.run(load())
    assert (True, False) == ("user_settings" in tables, "hidden" in tables)
