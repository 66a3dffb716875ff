"""First, do no harm: the demo changes only a database it made, or, with --database-url, only a schema of its own.

Each test builds a database on the real PostgreSQL that holds an application's own schema (a `public.user_settings`
keyed by uuid, row-level security on with a policy, rows inserted here), snapshots its catalogue and rows, lets the
demo do its worst (start, every database fault and heal, stop) and compares the snapshot byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from monitor.demo.cli import banner
from monitor.demo.config import demo_config
from monitor.demo.schema import APP_ROLE, DEMO_SCHEMA, SCHEMA_MARKER
from monitor.demo.store import (
    DemoDatabaseError,
    PgSettingsStore,
    drop_own_schema,
    prepare_own_schema,
)
from tests.monitor.demo.test_cli import outcomes, run_demo
from tests.support.daemon import command
from tests.support.postgres import dsn_with
from tests.support.servers import free_port

pytestmark = pytest.mark.process  # runs the demo and PostgreSQL clients as processes

APP_ROWS = (("11111111-1111-4111-8111-111111111111", "dark"), ("22222222-2222-4222-8222-222222222222", "light"))

# The catalogue as the application sees it: every relation outside the system schemas with its kind, RLS flags and
# ACL; every policy; every column; every schema (temporary ones aside: the db check's canary uses a temp table, and
# PostgreSQL keeps the pg_temp_N namespace it made for the session).
_SNAPSHOT = (
    """SELECT n.nspname, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity, coalesce(c.relacl::text, '')
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
         AND n.nspname NOT LIKE 'pg_temp_%%' ORDER BY 1, 2""",
    "SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, coalesce(qual, ''), "
    "coalesce(with_check, '') FROM pg_policies ORDER BY 1, 2, 3",
    """SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns
       WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3""",
    """SELECT nspname, coalesce(nspacl::text, ''), coalesce(obj_description(oid, 'pg_namespace'), '')
       FROM pg_namespace WHERE nspname NOT LIKE 'pg_temp_%%' AND nspname NOT LIKE 'pg_toast_temp_%%' ORDER BY 1""",
    "SELECT user_id::text, theme FROM public.user_settings ORDER BY 1",
    # Roles are cluster-wide and other suites create and drop their own on this server at the same time: the ones
    # the demo could touch are `authenticated` and the connecting user, and the memberships between them.
    """SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcanlogin, rolbypassrls FROM pg_roles
       WHERE rolname IN ('authenticated', current_user) OR rolname LIKE 'pam_safety_%%' ORDER BY 1""",
    """SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid
       JOIN pg_roles m ON m.oid = a.member
       WHERE r.rolname IN ('authenticated', current_user) OR m.rolname IN ('authenticated', current_user)
       ORDER BY 1, 2""",
)


def snapshot(dsn: str) -> list[list[tuple[Any, ...]]]:
    """The application-visible catalogue and rows of the database at `dsn` (see _SNAPSHOT)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [conn.execute(query).fetchall() for query in _SNAPSHOT]


@pytest.fixture
def app_db(pg_dsn: str) -> Iterator[str]:
    """A database of its own holding an application's schema: public.user_settings (uuid user_id, RLS on, a
    policy for `authenticated`, two rows) and public.notes; dropped afterwards."""
    name = f"pamsafe_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        # Other suites make the role in this shared cluster the same way; the demo itself never creates it here.
        with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(APP_ROLE)))
    dsn = dsn_with(pg_dsn, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.user_settings (user_id uuid PRIMARY KEY, theme text NOT NULL)")
            conn.execute("CREATE TABLE public.notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text)")
            conn.execute("ALTER TABLE public.user_settings ENABLE ROW LEVEL SECURITY")
            conn.execute(f"CREATE POLICY app_owner ON public.user_settings FOR ALL TO {APP_ROLE} "
                         "USING (user_id = '11111111-1111-4111-8111-111111111111'::uuid)")
            for row in APP_ROWS:
                conn.execute("INSERT INTO public.user_settings VALUES (%s, %s)", row)
        yield dsn
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def test_every_fault_and_heal_touches_only_the_demo_schema(app_db: str) -> None:
    """prepare_own_schema, then drop_table, revoke_grants, rls_recursion, each healed, writes through the store,
    and drop_own_schema: the application's tables, rows, RLS flags, policies and roles are as before, the demo's
    schema is gone, and while it existed it carried the marker and held the settings the store wrote."""
    before = snapshot(app_db)
    assert None is await prepare_own_schema(app_db)  # the role exists and the superuser may act as it
    store = PgSettingsStore(app_db, schema=DEMO_SCHEMA)
    try:
        assert {"a": 1} == await store.put(APP_ROWS[0][0], {"a": 1})
        for fault in ("drop_table", "revoke_grants", "rls_recursion"):
            if fault == "drop_table":
                await store.drop_table()
            else:
                await store.apply_fault(fault)
            await store.restore()
        with psycopg.connect(app_db, autocommit=True) as conn:
            marker = conn.execute("SELECT obj_description(%s::regnamespace, 'pg_namespace')", (DEMO_SCHEMA,))
            assert (SCHEMA_MARKER,) == marker.fetchone()
    finally:
        await store.aclose()
    await drop_own_schema(app_db)
    assert before == snapshot(app_db)


async def test_a_schema_the_demo_did_not_make_is_refused_untouched(app_db: str) -> None:
    """A pam_monitor_demo schema without the demo's marker (someone else's) is refused in one line and left as it
    was, its table and rows included; drop_own_schema leaves it alone too."""
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {DEMO_SCHEMA}")
        conn.execute(f"CREATE TABLE {DEMO_SCHEMA}.theirs (v int)")
        conn.execute("INSERT INTO pam_monitor_demo.theirs VALUES (7)")
    before = snapshot(app_db)
    with pytest.raises(DemoDatabaseError) as refused:
        await prepare_own_schema(app_db)
    assert (True, False) == ("did not create" in str(refused.value), "\n" in str(refused.value))
    await drop_own_schema(app_db)
    assert before == snapshot(app_db)
    with psycopg.connect(app_db, autocommit=True) as conn:
        assert [(7,)] == conn.execute("SELECT v FROM pam_monitor_demo.theirs").fetchall()


async def test_without_a_usable_role_no_role_is_made_and_the_role_faults_are_refused(app_db: str) -> None:
    """When the role the as-role check needs does not exist, the demo says why, creates no role, and the faults
    that need one are refused by the store; everything else still works in its own schema."""
    missing = f"pam_safety_{uuid.uuid4().hex[:8]}"
    before = snapshot(app_db)
    why = await prepare_own_schema(app_db, role=missing)
    assert missing in (why or "")
    store = PgSettingsStore(app_db, schema=DEMO_SCHEMA, role_faults=False)
    try:
        with pytest.raises(DemoDatabaseError):
            await store.apply_fault("revoke_grants")
        await store.drop_table()
        await store.restore()
        assert {"b": 2} == await store.put("someone", {"b": 2})
    finally:
        await store.aclose()
    with psycopg.connect(app_db, autocommit=True) as conn:
        assert [] == conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (missing,)).fetchall()
    await drop_own_schema(app_db)
    assert before == snapshot(app_db)


def test_demo_with_database_url_leaves_the_app_schema_byte_for_byte(tmp_path: Path, app_db: str) -> None:
    """The real `pam-monitor demo --database-url`: every check ok in its own schema (db_as_user included), each
    database fault flipped and healed over HTTP, then SIGTERM: the application's catalogue, rows and roles are as
    they were and the demo's schema is gone."""
    before = snapshot(app_db)
    with run_demo(tmp_path, "--database-url", app_db, interval="2s") as (demo, backend):
        assert f"inside the schema {DEMO_SCHEMA} only" in demo.raw_logs()
        demo.wait_for(lambda: set(outcomes(demo).values()) == {"ok"}, timeout=60, what="every check ok")
        assert {"db_roundtrip", "db_as_user"} <= set(outcomes(demo))
        for fault in ("drop_table", "revoke_grants", "rls_recursion"):
            httpx.post(f"{backend}/_faults/{fault}", timeout=10).raise_for_status()
            demo.wait_for(lambda: outcomes(demo)["db_as_user"] != "ok", timeout=30, what=f"{fault} seen")
            httpx.delete(f"{backend}/_faults", timeout=10).raise_for_status()
            demo.wait_for(lambda: set(outcomes(demo).values()) == {"ok"}, timeout=30, what=f"{fault} healed")
        assert 0 == demo.stop()
    assert before == snapshot(app_db)


def test_default_demo_ignores_database_url(tmp_path: Path, app_db: str) -> None:
    """With $DATABASE_URL naming the application's database and no --database-url, the demo says it ignores it,
    runs on its own throwaway cluster, and the application's database is untouched."""
    before = snapshot(app_db)
    with run_demo(tmp_path, env={"DATABASE_URL": app_db}, interval="2s") as (demo, _):
        logs = demo.raw_logs()
        assert ("$DATABASE_URL is set and not used", "throwaway PostgreSQL cluster") == (
            "$DATABASE_URL is set and not used" if "$DATABASE_URL is set and not used" in logs else logs[-2000:],
            "throwaway PostgreSQL cluster" if "throwaway PostgreSQL cluster" in logs else logs[-2000:])
        demo.wait_for(lambda: outcomes(demo).get("db_roundtrip") == "ok", timeout=60, what="db_roundtrip ok")
        assert 0 == demo.stop()
    assert before == snapshot(app_db)


def test_demo_refuses_a_foreign_schema_in_one_line(tmp_path: Path, app_db: str) -> None:
    """`demo --database-url` on a database whose pam_monitor_demo schema the demo did not make: one line on
    stderr, exit 2, no traceback, nothing started, nothing changed."""
    with psycopg.connect(app_db, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {DEMO_SCHEMA}")
    before = snapshot(app_db)
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(command("demo", "--database-url", app_db, "--target-port", str(free_port()),
                                  "--listen", f"127.0.0.1:{free_port()}"),
                          capture_output=True, text=True, timeout=60, env=environ, check=False, cwd=str(tmp_path))
    lines = [line for line in done.stderr.splitlines() if line.startswith("pam-monitor demo:")]
    assert (2, 1, False) == (done.returncode, len(lines), "Traceback" in done.stderr), done.stderr[-2000:]
    assert "did not create" in lines[0]
    assert before == snapshot(app_db)


def test_without_the_role_the_config_and_banner_leave_the_role_parts_out(tmp_path: Path) -> None:
    """With no usable role the demo's config has no db_as_user and names its tables in its own schema, and the
    banner offers no curl for the faults that need the role (it says why instead); on a database the demo did not
    create, db_migrations and rest_api are not configured and the own-cluster faults get a line saying why."""
    document = demo_config(target="http://127.0.0.1:8000", listen="127.0.0.1:9108", state_dir=tmp_path,
                           interval=5.0, with_db=True, alertmanager=None, schema=DEMO_SCHEMA, as_role=False)
    db_checks = {c["name"]: c for c in document["checks"] if c["kind"] == "db"}
    assert (["db_roundtrip"], f"{DEMO_SCHEMA}.user_settings") == (
        list(db_checks), db_checks["db_roundtrip"]["required_tables"][0])
    text = banner(target="http://127.0.0.1:8000", listen="127.0.0.1:9108", config_path=tmp_path / "c.yaml",
                  db_line="db", interval=5.0, checks={c["name"] for c in document["checks"]}, with_db=True,
                  exports={}, role_faults=False, cluster_faults=False)
    assert ([], 2) == ([f for f in ("revoke_grants", "rls_recursion") if f"/_faults/{f}\n" in text],
                       text.count("needs the role authenticated, not usable here"))
    own_cluster = ("unapplied_migration", "stale_schema_cache")
    assert ([], [], 2) == ([f for f in own_cluster if f"/_faults/{f}\n" in text],
                           [c for c in ("db_migrations", "rest_api") if c in {c["name"] for c in document["checks"]}],
                           text.count("changes objects outside the demo's schema"))
