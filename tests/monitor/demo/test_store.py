"""The demo's settings stores: in memory, and on PostgreSQL (round trips, a real DROP TABLE the db probe sees, the
role `authenticated` with its grants and policies, and the faults that break them)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from monitor.core.config import DbCheck, Target
from monitor.core.results import Outcome
from monitor.demo.schema import SEED_TABLES
from monitor.demo.store import (
    DemoDatabaseError,
    MemorySettingsStore,
    MissingRelationError,
    PgSettingsStore,
    ensure_schema,
)
from probes.deps import Deps
from tests.support.postgres import SeededDb, dsn_param, dsn_with
from tests.support.targets import run_probe


@pytest.fixture
async def store(seeded_db: SeededDb) -> AsyncIterator[PgSettingsStore]:
    await ensure_schema(seeded_db.dsn)
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
    """The default store merges puts, raises MissingRelationError(table) from get and put until restore(), and
    refuses database faults (it has no database)."""
    store = MemorySettingsStore()
    await store.put("u", {"a": 1})
    assert {"a": 1, "b": 2} == await store.put("u", {"b": 2})
    with pytest.raises(DemoDatabaseError, match="runs without one"):
        await store.apply_fault("revoke_grants")
    await store.drop_table()
    with pytest.raises(MissingRelationError) as caught:
        await store.get("u")
    assert "user_settings" == caught.value.table
    with pytest.raises(MissingRelationError):
        await store.put("u", {})
    await store.restore()
    assert None is await store.get("u")


# ---------------------------------------------------------------------------------------------- PostgreSQL


async def test_put_then_get_round_trips_and_merges(store: PgSettingsStore, seeded_db: SeededDb) -> None:
    """put stores the settings (insert, then merge), get returns them; an unknown user is None."""
    assert None is await store.get("u1")
    assert {"voice_enabled": False, "language": "de"} == await store.put(
        "u1", {"voice_enabled": False, "language": "de"})
    merged = {"voice_enabled": True, "language": "de", "theme": "dark"}
    assert merged == await store.put("u1", {"voice_enabled": True, "theme": "dark"})
    assert merged == await store.get("u1")
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


# ---------------------------------------------------------------------------------------------- as the app's users


def as_user(dsn: str, sub: str, table: str = "user_settings") -> list[tuple[Any, ...]] | str:
    """Read `table` the way PostgREST does for a signed-in user: role authenticated, request.jwt.claims set.
    Returns the rows, or the SQLSTATE of the error."""
    with psycopg.connect(dsn) as conn:
        try:
            conn.execute("SET LOCAL ROLE authenticated")
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": sub}),))
            return conn.execute(sql.SQL("SELECT * FROM public.{}").format(sql.Identifier(table))).fetchall()
        except psycopg.Error as exc:
            return exc.sqlstate or "?"
        finally:
            conn.rollback()


async def test_authenticated_sees_only_its_own_rows(store: PgSettingsStore, seeded_db: SeededDb) -> None:
    """ensure_schema makes role `authenticated` able to read the seed tables through owner policies on the JWT's
    sub: each user sees their own settings row, never another's; every seed table is readable."""
    await store.put("u1", {"a": 1})
    await store.put("u2", {"b": 2})
    mine = as_user(seeded_db.dsn, "u1")
    assert (1, "u1") == (len(mine), mine[0][0])
    for table in SEED_TABLES:
        assert [] == as_user(seeded_db.dsn, "nobody", table)


@pytest.mark.parametrize(("fault", "sqlstate"), [("revoke_grants", "42501"), ("rls_recursion", "42P17")])
async def test_database_faults_break_the_users_reads_until_restore(
        store: PgSettingsStore, seeded_db: SeededDb, fault: str, sqlstate: str) -> None:
    """revoke_grants makes the users' read of user_settings fail with 42501, rls_recursion with 42P17; the store's
    own connection still works (the backend is fine); restore() undoes both, and applying twice is harmless."""
    await store.put("u1", {"a": 1})
    await store.apply_fault(fault)
    await store.apply_fault(fault)
    assert sqlstate == as_user(seeded_db.dsn, "u1")
    assert {"a": 1} == await store.get("u1")
    await store.restore()
    assert 1 == len(as_user(seeded_db.dsn, "u1"))


@pytest.fixture
def plain_user(seeded_db: SeededDb) -> Iterator[str]:
    """A DSN for a fresh login role that owns nothing, is no superuser and is not a member of authenticated."""
    role = f"pamtest_demo_{uuid.uuid4().hex[:10]}"
    seeded_db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield dsn_with(seeded_db.dsn, user=role)
    finally:
        seeded_db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        seeded_db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_ensure_schema_says_what_a_plain_user_needs(seeded_db: SeededDb, plain_user: str) -> None:
    """A DATABASE_URL whose user may not create or join `authenticated` gets one message naming the statements an
    administrator must run (and no traceback-worthy psycopg error)."""
    await ensure_schema(seeded_db.dsn)  # the role exists now, cluster-wide
    with pytest.raises(DemoDatabaseError) as refused:
        await ensure_schema(plain_user)
    role = dsn_param(plain_user, "user")
    assert f'GRANT authenticated TO "{role}"' in str(refused.value)
