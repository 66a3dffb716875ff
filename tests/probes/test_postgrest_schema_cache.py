"""The `postgrest` prober telling a stale PostgREST schema cache from a missing table, against a real PostgreSQL.

The stand-in (tests/support/fake_postgrest.py with `dsn`) caches the database's tables as PostgREST does and
reloads them only on `NOTIFY pgrst, 'reload schema'`; the check's `database` target is the same database.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from alerts.judge.evaluate import evaluate
from alerts.judge.rules import rules_for
from alerts.model import CheckMemory, Signal
from monitor.core.config import PostgrestCheck, Target
from monitor.core.results import Outcome, ProbeResult
from probes import RULES_BY_KIND
from probes.deps import Deps
from tests.support.alerting import make_config, result
from tests.support.fake_postgrest import FakePostgrest
from tests.support.poll import until
from tests.support.postgres import SEED_TABLES, SeededDb
from tests.support.servers import serve_asgi
from tests.support.targets import run_probe

NEW_TABLE = "voice_presets"
RELOAD = "NOTIFY pgrst, 'reload schema'"


def make_check(tables: list[str], **overrides: Any) -> PostgrestCheck:
    fields: dict[str, Any] = {
        "name": "rest_tables", "kind": "postgrest", "target": "supabase", "interval": 30, "timeout": 5,
        "failure_threshold": 1, "success_threshold": 1, "required_tables": tables, "database": "supabase_db",
    }
    fields.update(overrides)
    return PostgrestCheck(**fields)


@pytest.fixture
def cached(seeded_db: SeededDb) -> Iterator[tuple[FakePostgrest, str]]:
    """A PostgREST stand-in caching the seeded database's public tables."""
    fake = FakePostgrest(tables={"public": set()}, dsn=seeded_db.dsn)
    with serve_asgi(fake.app()) as url:
        yield fake, url


@contextlib.asynccontextmanager
async def deps_for(url: str, dsn: str) -> AsyncIterator[Deps]:
    deps = Deps(targets={"supabase": Target(base_url=url), "supabase_db": Target(dsn=dsn)}, max_in_flight=4,
                body_limit=1 << 20, user_agent="pam-monitor-test")
    try:
        yield deps
    finally:
        await deps.aclose()


async def run(url: str, dsn: str, tables: list[str], **overrides: Any) -> ProbeResult:
    async with deps_for(url, dsn) as deps:
        return await run_probe(make_check(tables, **overrides), deps)


def notify_and_wait(db: SeededDb, fake: FakePostgrest) -> None:
    before = fake.reloads
    db.execute(RELOAD)
    until(lambda: fake.reloads > before, timeout=10, what="the stand-in to reload its schema cache")


async def test_a_table_created_after_the_cache_loaded_is_stale_until_notify(
    cached: tuple[FakePostgrest, str], seeded_db: SeededDb
) -> None:
    """A table created after PostgREST loaded its schema is schema_cache_stale (naming the NOTIFY fix), not
    table_missing; after NOTIFY pgrst it is ok; dropped and notified, it is table_missing."""
    fake, url = cached
    tables = [*SEED_TABLES, NEW_TABLE]
    first = await run(url, seeded_db.dsn, list(SEED_TABLES))
    assert first.outcome is Outcome.OK, first.message  # the stand-in's cache is loaded now
    seeded_db.execute(f"CREATE TABLE public.{NEW_TABLE} (id int PRIMARY KEY)")

    stale = await run(url, seeded_db.dsn, tables)
    assert stale.outcome is Outcome.SCHEMA_CACHE_STALE, stale.message
    assert [NEW_TABLE] == stale.details["stale_tables"]
    assert RELOAD in stale.message
    assert "supabase_db" in stale.message
    assert "PGRST205" in stale.message
    assert stale.tables[NEW_TABLE] is True  # the database has it: no TableMissing, here or in Prometheus
    assert "missing_tables" not in stale.details

    notify_and_wait(seeded_db, fake)
    fresh = await run(url, seeded_db.dsn, tables)
    assert fresh.outcome is Outcome.OK, fresh.message

    seeded_db.execute(f"DROP TABLE public.{NEW_TABLE}")
    notify_and_wait(seeded_db, fake)
    gone = await run(url, seeded_db.dsn, tables)
    assert gone.outcome is Outcome.TABLE_MISSING, gone.message
    assert [NEW_TABLE] == gone.details["missing_tables"]
    assert "stale_tables" not in gone.details
    assert "absent from database target 'supabase_db' too" in gone.message


async def test_a_really_missing_and_a_stale_table_in_one_run(
    cached: tuple[FakePostgrest, str], seeded_db: SeededDb
) -> None:
    """One table gone from both, one only from the cache: table_missing wins, and the stale one is listed too."""
    _fake, url = cached
    assert (await run(url, seeded_db.dsn, list(SEED_TABLES))).outcome is Outcome.OK
    seeded_db.execute(f"CREATE TABLE public.{NEW_TABLE} (id int PRIMARY KEY)")
    got = await run(url, seeded_db.dsn, [*SEED_TABLES, NEW_TABLE, "never_created"])
    assert got.outcome is Outcome.TABLE_MISSING, got.message
    assert ["never_created"] == got.details["missing_tables"]
    assert [NEW_TABLE] == got.details["stale_tables"]
    assert RELOAD in got.message


async def test_without_database_the_message_says_it_cannot_tell(
    cached: tuple[FakePostgrest, str], seeded_db: SeededDb
) -> None:
    """Without `database`, PGRST205 stays table_missing and the message says a stale cache cannot be told apart
    and how to configure it."""
    _fake, url = cached
    assert (await run(url, seeded_db.dsn, list(SEED_TABLES))).outcome is Outcome.OK
    seeded_db.execute(f"CREATE TABLE public.{NEW_TABLE} (id int PRIMARY KEY)")
    got = await run(url, seeded_db.dsn, [NEW_TABLE], database=None)
    assert got.outcome is Outcome.TABLE_MISSING, got.message
    assert "cannot tell a stale PostgREST schema cache from a missing table" in got.message
    assert "set database:" in got.message
    assert "catalogue_checked" not in got.details


async def test_an_unreachable_catalogue_keeps_table_missing_and_says_why(
    cached: tuple[FakePostgrest, str], seeded_db: SeededDb
) -> None:
    """When the database target cannot be reached, the run stays table_missing (never ok, never stale) and the
    message says the catalogue could not be read; the DSN's password never shows."""
    _fake, url = cached
    assert (await run(url, seeded_db.dsn, list(SEED_TABLES))).outcome is Outcome.OK
    seeded_db.execute(f"CREATE TABLE public.{NEW_TABLE} (id int PRIMARY KEY)")
    dead = "postgresql://app:pw-Hidden-77@127.0.0.1:1/app"
    async with deps_for(url, dead) as deps:
        got = await run_probe(make_check([NEW_TABLE]), deps)
    assert got.outcome is Outcome.TABLE_MISSING, got.message
    assert "could not be read" in got.message
    assert "cannot be told from a missing table" in got.message
    assert got.details["catalogue_error"] == "connection_error"
    assert "pw-Hidden-77" not in repr(got)


def test_schema_cache_stale_pages_per_table_and_resolves_table_missing() -> None:
    """SchemaCacheStale fires once per stale table (label table); TableMissing is not raised for it, and a
    TableMissing instance of that table turns GOOD (the catalogue proves it exists)."""
    config = make_config()
    check = next(c for c in config.checks if c.kind == "postgrest")
    stale = result(check.name, Outcome.SCHEMA_CACHE_STALE, status=404, tables={"user_settings": True},
                   details={"stale_tables": ["user_settings"], "catalogue_checked": True})
    key = f"TableMissing/{check.name}/user_settings"
    out = evaluate(config, check, stale, CheckMemory(), rules=rules_for(config, check, RULES_BY_KIND),
                   kind_rules=RULES_BY_KIND["postgrest"], known={key})
    bad = [o for o in out if o.signal is Signal.BAD]
    assert [("SchemaCacheStale", "user_settings")] == [(o.alertname, o.labels["table"]) for o in bad]
    assert bad[0].labels["severity"] == "critical"
    assert "reload schema" in bad[0].annotations["runbook"]
    assert any(o.key == key and o.signal is Signal.GOOD for o in out)
