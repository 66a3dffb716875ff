"""The `db` prober against a real PostgreSQL: every outcome it promises, produced by a real broken schema.

Unreachable servers (refused, DNS, hang, garbage, closed, reset) are in test_contract.py for every kind."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from monitor.core.config import DbCheck, Target
from monitor.core.results import Outcome, ProbeResult
from monitor.demo.pgtemp import TempPostgres
from probes import _pg
from probes.deps import Deps
from tests.support.poll import until_async
from tests.support.postgres import SEED_TABLES, SeededDb, dsn_with
from tests.support.targets import run_probe

SETTINGS_COLUMNS = ["user_id", "voice_enabled", "created_at", "updated_at"]
PASSWORD = "pw-Very$ecret-9f3c"  # distinctive, so a leak anywhere in a result is found by a substring test


def make_check(**overrides: Any) -> DbCheck:
    fields: dict[str, Any] = {
        "name": "db_roundtrip",
        "kind": "db",
        "target": "database",
        "interval": 30,
        "timeout": 3,
        "failure_threshold": 2,
        "success_threshold": 2,
        "required_tables": list(SEED_TABLES),
        "required_columns": {"user_settings": SETTINGS_COLUMNS},
        "require_rls": True,
        "canary": True,
    }
    fields.update(overrides)
    return DbCheck(**fields)


@contextlib.asynccontextmanager
async def deps_for(dsn: str) -> AsyncIterator[Deps]:
    deps = Deps(targets={"database": Target(dsn=dsn)}, max_in_flight=4, body_limit=1 << 20,
                user_agent="pam-monitor-test")
    try:
        yield deps
    finally:
        await deps.aclose()


async def run(dsn: str, **overrides: Any) -> ProbeResult:
    async with deps_for(dsn) as deps:
        return await run_probe(make_check(**overrides), deps)


def everything(result: ProbeResult) -> str:
    return repr(result)


@pytest.fixture
def password_pg() -> Iterator[TempPostgres]:
    with TempPostgres(password=PASSWORD) as server:
        yield server


@pytest.fixture
def own_pg() -> Iterator[TempPostgres]:
    server = TempPostgres().start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ healthy


async def test_healthy_schema_is_ok_with_every_table_and_phase(seeded_db: SeededDb) -> None:
    """The seed schema intact: ok, every required table reported present, all three phases timed."""
    result = await run(seeded_db.dsn)
    assert result.outcome == Outcome.OK, result.message
    assert dict.fromkeys(SEED_TABLES, True) == dict(result.tables)
    assert {"connect", "query", "canary"} == set(result.phases)
    assert result.details["canary"] == "ok"
    assert False is result.details["read_only"]


async def test_schema_qualified_and_case_sensitive_names_are_found(seeded_db: SeededDb) -> None:
    """`auth.users` is looked up in schema auth, and a quoted mixed-case table is matched exactly."""
    seeded_db.execute("CREATE SCHEMA auth")
    seeded_db.execute("CREATE TABLE auth.users (id uuid PRIMARY KEY)")
    seeded_db.execute('CREATE TABLE public."TripPlans" (id int)')
    result = await run(seeded_db.dsn, required_tables=["auth.users", "TripPlans", "tripplans"],
                       required_columns={}, require_rls=False, canary=False)
    assert result.outcome == Outcome.TABLE_MISSING
    assert dict(result.tables) == {"auth.users": True, "TripPlans": True, "tripplans": False}
    assert result.details["missing_tables"] == ["tripplans"]


# ------------------------------------------------------------------------------------------------ schema drift


@pytest.mark.parametrize("dropped", [["user_settings"], ["user_settings", "user_wishlists"]])
async def test_dropped_tables_are_each_named(seeded_db: SeededDb, dropped: list[str]) -> None:
    """Dropping tables gives table_missing, and the message, details and tables map name every one."""
    for table in dropped:
        seeded_db.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    result = await run(seeded_db.dsn)
    assert result.outcome == Outcome.TABLE_MISSING
    assert dropped == result.details["missing_tables"]
    for table in dropped:
        assert table in result.message
    assert {t: t not in dropped for t in SEED_TABLES} == dict(result.tables)


async def test_dropped_column_is_column_missing(seeded_db: SeededDb) -> None:
    """A required column dropped from a present table gives column_missing naming table.column."""
    seeded_db.execute("ALTER TABLE user_settings DROP COLUMN voice_enabled")
    result = await run(seeded_db.dsn)
    assert result.outcome == Outcome.COLUMN_MISSING
    assert result.details["missing_columns"] == ["user_settings.voice_enabled"]
    assert "user_settings.voice_enabled" in result.message


async def test_rls_disabled_is_reported(seeded_db: SeededDb) -> None:
    """RLS turned off on a required table gives rls_disabled naming it (when require_rls)."""
    seeded_db.execute("ALTER TABLE affiliate_sales DISABLE ROW LEVEL SECURITY")
    result = await run(seeded_db.dsn)
    assert result.outcome == Outcome.RLS_DISABLED
    assert result.details["rls_disabled"] == ["affiliate_sales"]
    assert (await run(seeded_db.dsn, require_rls=False)).outcome == Outcome.OK


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        (["DROP TABLE user_wishlists", "ALTER TABLE user_settings DROP COLUMN created_at",
          "ALTER TABLE affiliate_sales DISABLE ROW LEVEL SECURITY"], Outcome.TABLE_MISSING),
        (["ALTER TABLE user_settings DROP COLUMN created_at",
          "ALTER TABLE affiliate_sales DISABLE ROW LEVEL SECURITY"], Outcome.COLUMN_MISSING),
    ],
)
async def test_precedence_table_over_column_over_rls(
    seeded_db: SeededDb, statements: list[str], expected: Outcome
) -> None:
    """With several problems at once the outcome is the gravest, and the details still list all of them."""
    for statement in statements:
        seeded_db.execute(statement)
    result = await run(seeded_db.dsn)
    assert expected == result.outcome
    assert result.details["missing_columns"] == ["user_settings.created_at"]
    assert result.details["rls_disabled"] == ["affiliate_sales"]


# ------------------------------------------------------------------------------------------------ privileges


async def test_missing_grant_is_permission_denied(seeded_db: SeededDb) -> None:
    """A role without SELECT on a required table gets permission_denied (42501) naming the table."""
    role = f"{seeded_db.name}_app"
    seeded_db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        for table in SEED_TABLES[1:]:
            seeded_db.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), sql.Identifier(role)))
        result = await run(dsn_with(seeded_db.dsn, user=role), canary=False)
        assert result.outcome == Outcome.PERMISSION_DENIED
        assert result.details["sqlstate"] == "42501"
        assert "user_settings" in result.message
    finally:
        seeded_db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        seeded_db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_recursive_policy_is_policy_error(seeded_db: SeededDb) -> None:
    """A row-level security policy that queries its own table gives policy_error (42P17) for the app role."""
    role = f"{seeded_db.name}_app"
    seeded_db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        seeded_db.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
        seeded_db.execute("CREATE POLICY recursive ON user_settings USING "
                          "(EXISTS (SELECT 1 FROM user_settings s WHERE s.user_id = user_settings.user_id))")
        result = await run(dsn_with(seeded_db.dsn, user=role), canary=False)
        assert result.outcome == Outcome.POLICY_ERROR
        assert result.details["sqlstate"] == "42P17"
    finally:
        seeded_db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        seeded_db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# ------------------------------------------------------------------------------------------------ canary


async def test_canary_in_a_configured_table_writes_reads_and_deletes(seeded_db: SeededDb) -> None:
    """With canary_table the row is written and read back, then deleted: the table is empty afterwards."""
    seeded_db.execute("CREATE TABLE monitor_canary (key text PRIMARY KEY, value text)")
    result = await run(seeded_db.dsn, canary_table="monitor_canary")
    assert result.outcome == Outcome.OK, result.message
    assert result.details["canary"] == "ok"
    with seeded_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM monitor_canary").fetchone() == (0,)


async def test_canary_that_reads_back_something_else_fails(seeded_db: SeededDb) -> None:
    """A trigger that rewrites the value makes the read-back comparison fail: db_error, canary mismatch."""
    seeded_db.execute("CREATE TABLE monitor_canary (key text PRIMARY KEY, value text)")
    seeded_db.execute("CREATE FUNCTION mangle() RETURNS trigger LANGUAGE plpgsql AS "
                      "$$BEGIN NEW.value := 'mangled'; RETURN NEW; END$$")
    seeded_db.execute("CREATE TRIGGER mangle BEFORE INSERT ON monitor_canary FOR EACH ROW EXECUTE FUNCTION mangle()")
    result = await run(seeded_db.dsn, canary_table="monitor_canary")
    assert result.outcome == Outcome.DB_ERROR
    assert result.details["canary"] == "mismatch"


# ------------------------------------------------------------------------------------------------ read-only


@pytest.mark.parametrize(
    ("canary", "expect_read_only", "expected"),
    [(False, False, Outcome.OK), (True, True, Outcome.OK), (True, False, Outcome.DB_ERROR)],
)
async def test_read_only_server(
    seeded_db: SeededDb, canary: bool, expect_read_only: bool, expected: Outcome
) -> None:
    """A read-only database is reported as such: ok without canary (or when expected), else 25006 from the write."""
    seeded_db.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on")
                      .format(sql.Identifier(seeded_db.name)))
    result = await run(seeded_db.dsn, canary=canary, expect_read_only=expect_read_only)
    assert expected == result.outcome, result.message
    assert True is result.details["read_only"]
    if expected is Outcome.OK:
        assert "read-only" in result.message
    else:
        assert result.details["sqlstate"] == "25006"
        assert result.details["phase"] == "canary"


# ------------------------------------------------------------------------------------------------ timeouts


async def test_statement_blocked_on_a_lock_times_out_within_the_deadline(seeded_db: SeededDb) -> None:
    """Another session holding ACCESS EXCLUSIVE on user_settings: timeout (57014), finished within the timeout."""
    with seeded_db.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE user_settings IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = await run(seeded_db.dsn, timeout=1.5)
        elapsed = time.monotonic() - started
        holder.execute("ROLLBACK")
    assert result.outcome == Outcome.TIMEOUT, result.message
    assert result.details["sqlstate"] == "57014"
    assert result.details["phase"] == "query"
    # Without the statement timeout the probe would wait for the lock for as long as the holder keeps it (here:
    # until the probe returns), so any finite bound proves it; generous for a busy machine.
    assert elapsed < 1.5 + 3.0, f"the probe ran {elapsed:.2f} s past a 1.5 s timeout"


# ------------------------------------------------------------------------------------------------ connection


@pytest.mark.process
async def test_wrong_password_is_db_error_28p01_and_never_leaks(password_pg: TempPostgres) -> None:
    """scram auth with a wrong password: db_error with SQLSTATE 28P01; neither password is in the result."""
    wrong = "Wr0ng-" + PASSWORD[::-1]
    good = await run(password_pg.dsn, required_tables=[], required_columns={}, require_rls=False)
    assert good.outcome == Outcome.OK, good.message
    result = await run(password_pg.dsn_for(password=wrong), required_tables=[], required_columns={})
    assert result.outcome == Outcome.DB_ERROR
    assert result.details["sqlstate"] == "28P01"
    assert "password authentication failed" in result.message
    for secret in (wrong, PASSWORD):
        assert secret not in everything(good)
        assert secret not in everything(result)


@pytest.mark.process
async def test_server_stopped_between_runs_then_restarted(own_pg: TempPostgres) -> None:
    """Fresh connections: ok, then connection_error while the server is down, then ok again once it is back."""
    kwargs: dict[str, Any] = {"required_tables": [], "required_columns": {}, "require_rls": False}
    async with deps_for(own_pg.dsn) as deps:
        check = make_check(**kwargs)
        assert (await run_probe(check, deps)).outcome == Outcome.OK
        own_pg.stop(remove=False)
        down = await run_probe(check, deps)
        own_pg.start()
        up = await run_probe(check, deps)
    assert down.outcome == Outcome.CONNECTION_ERROR, down.message
    assert up.outcome == Outcome.OK, up.message


@pytest.mark.process
async def test_pooled_connection_when_server_stops_mid_run(own_pg: TempPostgres) -> None:
    """pool: true with a kept connection, server shut down: connection_error (not a hang, not a raise)."""
    kwargs: dict[str, Any] = {"required_tables": [], "required_columns": {}, "require_rls": False, "pool": True}
    async with deps_for(own_pg.dsn) as deps:
        check = make_check(**kwargs)
        first = await run_probe(check, deps)
        own_pg.stop(remove=False)
        down = await run_probe(check, deps)
        own_pg.start()
        back = await run_probe(check, deps)
    assert first.outcome == Outcome.OK, first.message
    assert down.outcome == Outcome.CONNECTION_ERROR, down.message
    assert back.outcome == Outcome.OK, back.message
    assert first.details["backend_pid"] != back.details["backend_pid"]


async def test_pool_reuses_one_connection_and_recovers_from_termination(seeded_db: SeededDb) -> None:
    """pool: true keeps one backend across runs; after pg_terminate_backend the next run reconnects and is ok."""
    async with deps_for(seeded_db.dsn) as deps:
        check = make_check(pool=True)
        first = await run_probe(check, deps)
        second = await run_probe(check, deps)
        with seeded_db.connect() as admin:
            # With a timeout, pg_terminate_backend returns only once the backend is gone.
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first.details["backend_pid"],))
        third = await run_probe(check, deps)
        fourth = await run_probe(check, deps)
    assert [r.outcome for r in (first, second, third, fourth)] == [Outcome.OK] * 4
    assert first.details["backend_pid"] == second.details["backend_pid"]
    assert (first.details["reused_connection"], second.details["reused_connection"]) == (False, True)
    assert "connect" not in second.phases
    assert first.details["backend_pid"] != third.details["backend_pid"]
    assert third.details["backend_pid"] == fourth.details["backend_pid"]


async def test_pooled_connection_is_closed_with_the_deps(seeded_db: SeededDb) -> None:
    """Closing the deps closes the kept connection: its backend disappears from pg_stat_activity."""
    async with deps_for(seeded_db.dsn) as deps:
        result = await run_probe(make_check(pool=True), deps)
    pid = result.details["backend_pid"]
    with seeded_db.connect() as admin:
        # The backend exits asynchronously after the client's Terminate message.
        await until_async(lambda: (0,) == admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                                  (pid,)).fetchone(), timeout=5)


async def test_malformed_dsn_is_db_error_without_echoing_it() -> None:
    """A DSN libpq cannot parse: db_error, and nothing of the DSN (which may hold the password) is echoed."""
    dsn = f"host=127.0.0.1 password={PASSWORD} nonsense"
    result = await run(dsn)
    assert result.outcome == Outcome.DB_ERROR
    assert PASSWORD not in everything(result)
    assert "nonsense" not in everything(result)


# ------------------------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://u:p%40ss@h/db", "host=h password=p@ss", "postgresql://u:p@ss@h/db?password=p@ss"],
)
def test_dsn_redactor_hides_the_dsn_and_every_form_of_its_password(dsn: str) -> None:
    """The DSN, and its (4-character) password wherever it stands as a password (raw or URL-encoded: after
    `password`, in another URL's userinfo), never survive redaction. A password that short is not hidden bare
    in other words (monitor.core.secrets.MIN_FRAGMENT)."""
    redact = _pg.dsn_redactor(dsn)
    said = redact(f"failed for {dsn}: password p@ss, password=p%40ss, retried postgresql://u:p%40ss@h2/db")
    assert "p@ss" not in said
    assert "p%40ss" not in said
    assert dsn not in said


def test_one_line_flattens_and_bounds() -> None:
    """one_line() keeps a message on one bounded line."""
    assert "a b c" == _pg.one_line("a  b\n c")
    assert 300 == len(_pg.one_line("x" * 1000))


@pytest.mark.parametrize(
    ("message", "sqlstate", "outcome"),
    [
        ('connection to server at "h" failed: FATAL:  password authentication failed for user "u"', "28P01",
         Outcome.DB_ERROR),
        ('connection to server at "h" failed: FATAL:  sorry, too many clients already', "53300", Outcome.DB_ERROR),
        ("connection to server at \"h\" failed: FATAL:  the database system is shutting down", "57P03",
         Outcome.CONNECTION_ERROR),
        ("failed to resolve host 'x.invalid': [Errno -2] Name or service not known", None, Outcome.DNS_ERROR),
        ("connection to server at \"h\" failed: server does not support SSL, but SSL was required", None,
         Outcome.TLS_ERROR),
        ("server closed the connection unexpectedly", None, Outcome.CONNECTION_ERROR),
    ],
)
def test_connect_time_messages_are_classified(message: str, sqlstate: str | None, outcome: Outcome) -> None:
    """libpq gives connect-time errors as text only; the common ones map to their SQLSTATE and outcome."""
    classified = _pg.classify(psycopg.OperationalError(message))
    assert classified is not None
    assert (outcome, sqlstate) == (classified.outcome, classified.sqlstate)
