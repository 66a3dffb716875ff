"""The demo's settings stores: in memory, and on PostgreSQL (round trips, a real DROP TABLE the db probe sees)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from monitor.core.config import DbCheck, Target
from monitor.core.results import Outcome
from monitor.demo.schema import SEED_TABLES
from monitor.demo.store import MemorySettingsStore, MissingRelationError, PgSettingsStore, ensure_schema
from probes.deps import Deps
from tests.support.postgres import SeededDb
from tests.support.targets import run_probe


@pytest.fixture
async def store(seeded_db: SeededDb) -> AsyncIterator[PgSettingsStore]:
    store = PgSettingsStore(seeded_db.dsn)
    try:
        yield store
    finally:
        await store.aclose()


async def probe_outcome(dsn: str) -> tuple[Outcome, dict[str, bool]]:
    check = DbCheck(kind="db", name="demo_db", target="database", interval=30, timeout=3, failure_threshold=2,
                    success_threshold=2, required_tables=list(SEED_TABLES), require_rls=True)
    deps = Deps(targets={"database": Target(dsn=dsn)}, max_in_flight=2, body_limit=1 << 20,
                user_agent="pam-monitor-test")
    try:
        result = await run_probe(check, deps)
    finally:
        await deps.aclose()
    return result.outcome, dict(result.tables)


# ---------------------------------------------------------------------------------------------- in memory


async def test_memory_store_raises_while_dropped() -> None:
    """The default store raises MissingRelationError(table) from get and put until restore()."""
    store = MemorySettingsStore()
    await store.put("u", {"a": 1})
    await store.drop_table()
    with pytest.raises(MissingRelationError) as caught:
        await store.get("u")
    assert "user_settings" == caught.value.table
    with pytest.raises(MissingRelationError):
        await store.put("u", {})
    await store.restore()
    assert None is await store.get("u")


# ---------------------------------------------------------------------------------------------- PostgreSQL


async def test_put_then_get_round_trips_and_updates(store: PgSettingsStore, seeded_db: SeededDb) -> None:
    """put stores the settings (insert, then replace), get returns them; an unknown user is None."""
    assert None is await store.get("u1")
    assert {"voice_enabled": False, "language": "de"} == await store.put(
        "u1", {"voice_enabled": False, "language": "de"})
    assert {"voice_enabled": True, "theme": "dark"} == await store.put("u1", {"voice_enabled": True, "theme": "dark"})
    assert {"voice_enabled": True, "theme": "dark"} == await store.get("u1")
    with seeded_db.connect() as conn:
        assert (True,) == conn.execute("SELECT voice_enabled FROM user_settings WHERE user_id = 'u1'").fetchone()


async def test_user_id_is_a_parameter_not_sql(store: PgSettingsStore) -> None:
    """A user id full of SQL is stored as data (every statement is parameterised)."""
    evil = "x'); DROP TABLE user_settings; --"
    await store.put(evil, {"voice_enabled": True})
    assert {"voice_enabled": True} == await store.get(evil)


async def test_drop_table_really_drops_and_restore_recreates(store: PgSettingsStore, seeded_db: SeededDb) -> None:
    """drop_table removes user_settings (the db probe says table_missing, get/put raise MissingRelationError);
    restore brings it back with RLS on (the db probe says ok)."""
    await store.put("u1", {"voice_enabled": True})
    await store.drop_table()
    outcome, tables = await probe_outcome(seeded_db.dsn)
    assert (Outcome.TABLE_MISSING, False) == (outcome, tables["user_settings"])
    with pytest.raises(MissingRelationError) as raised:
        await store.get("u1")
    assert "user_settings" == raised.value.table
    with pytest.raises(MissingRelationError):
        await store.put("u1", {"voice_enabled": True})
    await store.restore()
    assert (Outcome.OK, dict.fromkeys(SEED_TABLES, True)) == await probe_outcome(seeded_db.dsn)
    assert None is await store.get("u1")


async def test_store_reconnects_after_its_connection_is_killed(store: PgSettingsStore, seeded_db: SeededDb) -> None:
    """The reused connection dying (pg_terminate_backend) is invisible: the next call reconnects and works."""
    await store.put("u1", {"voice_enabled": True})
    with seeded_db.connect() as admin:
        # The timeout argument makes pg_terminate_backend wait until the backend is gone.
        killed = admin.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                               "WHERE application_name = 'pam-monitor-demo' AND datname = current_database()"
                               ).fetchone()
    assert (1,) == killed
    assert {"voice_enabled": True} == await store.get("u1")


async def test_ensure_schema_is_idempotent(seeded_db: SeededDb) -> None:
    """ensure_schema on a complete schema changes nothing and recreates a dropped table (with RLS)."""
    seeded_db.execute("DROP TABLE user_wishlists")
    await ensure_schema(seeded_db.dsn)
    await ensure_schema(seeded_db.dsn)
    with seeded_db.connect() as conn:
        rows = conn.execute("SELECT relname, relrowsecurity FROM pg_class WHERE relname = ANY(%s) ORDER BY relname",
                            (list(SEED_TABLES),)).fetchall()
    assert sorted((t, True) for t in SEED_TABLES) == rows
