"""A `db` check's `migrations` against a real PostgreSQL: the repository's versions (a directory of migration files
or a list) compared with supabase_migrations.schema_migrations in a throwaway database."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from pydantic import ValidationError

from alerts.judge.evaluate import evaluate
from alerts.judge.rules import rules_for
from alerts.model import CheckMemory, Signal
from monitor.core.config import DbCheck, Target
from monitor.core.results import Outcome, ProbeResult
from probes import RULES_BY_KIND
from probes.deps import Deps
from tests.support.alerting import make_config, result
from tests.support.postgres import SEED_TABLES, SeededDb, dsn_with
from tests.support.targets import run_probe

APPLIED = ["20240101000000", "20240215093000"]
PENDING = "20240301120000"


def make_check(migrations: dict[str, Any], **overrides: Any) -> DbCheck:
    fields: dict[str, Any] = {
        "name": "db_roundtrip", "kind": "db", "target": "database", "interval": 30, "timeout": 5,
        "failure_threshold": 1, "success_threshold": 1, "required_tables": list(SEED_TABLES),
        "migrations": migrations,
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


async def run(dsn: str, migrations: dict[str, Any], **overrides: Any) -> ProbeResult:
    async with deps_for(dsn) as deps:
        return await run_probe(make_check(migrations, **overrides), deps)


def record(db: SeededDb, *versions: str) -> None:
    """What `supabase db push` leaves: the schema, the table and one row per applied version."""
    db.execute("CREATE SCHEMA IF NOT EXISTS supabase_migrations")
    db.execute("CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations "
               "(version text PRIMARY KEY, statements text[], name text)")
    for version in versions:
        db.execute("INSERT INTO supabase_migrations.schema_migrations (version, name) VALUES (%s, 'm')", (version,))


def write(directory: Path, *versions: str) -> None:
    for version in versions:
        (directory / f"{version}_change_{version[-4:]}.sql").write_text("-- never read by pam-monitor\n")


async def test_all_applied_is_ok_and_a_new_file_is_migration_pending(seeded_db: SeededDb, tmp_path: Path) -> None:
    """Every file's version recorded: ok, saying so. A new file (read at the next run) is migration_pending
    naming it; other files in the directory are ignored; once recorded, ok again."""
    record(seeded_db, *APPLIED)
    write(tmp_path, *APPLIED)
    (tmp_path / "README.md").write_text("not a migration")
    spec = {"dir": str(tmp_path)}
    first = await run(seeded_db.dsn, spec)
    assert first.outcome is Outcome.OK, first.message
    assert "all 2 migrations applied" in first.message
    assert first.details["migrations_compared"] is True
    assert "pending_migrations" not in first.details

    write(tmp_path, PENDING)
    pending = await run(seeded_db.dsn, spec)
    assert pending.outcome is Outcome.MIGRATION_PENDING, pending.message
    assert [PENDING] == pending.details["pending_migrations"]
    assert f"1 migration not applied: {PENDING}_change_0000.sql" in pending.message
    assert pending.tables == dict.fromkeys(SEED_TABLES, True)  # the rest of the run is still reported

    record(seeded_db, PENDING)
    assert (await run(seeded_db.dsn, spec)).outcome is Outcome.OK


async def test_applied_but_not_in_the_repository_is_reported_never_paged(seeded_db: SeededDb) -> None:
    """A version in the database and not in the list is named in the message and details; the run stays ok."""
    record(seeded_db, *APPLIED, "20231231000000")
    got = await run(seeded_db.dsn, {"versions": APPLIED})
    assert got.outcome is Outcome.OK, got.message
    assert ["20231231000000"] == got.details["migrations"]["unrecorded"]
    assert "applied in the database but not in the repository: 20231231000000" in got.message


async def test_no_migrations_table_means_every_version_is_pending(seeded_db: SeededDb) -> None:
    """Without supabase_migrations.schema_migrations, every version is pending and the message says the CLI never
    applied any."""
    got = await run(seeded_db.dsn, {"versions": [*APPLIED, PENDING]})
    assert got.outcome is Outcome.MIGRATION_PENDING, got.message
    assert [*APPLIED, PENDING] == got.details["pending_migrations"]
    assert got.details["migrations"]["table_present"] is False
    assert "supabase_migrations.schema_migrations does not exist" in got.message


async def test_a_graver_finding_keeps_its_outcome_and_lists_the_pending_versions(seeded_db: SeededDb) -> None:
    """A missing table outranks a pending migration (which may be its cause): table_missing, with the pending
    version in the details and the message."""
    record(seeded_db, *APPLIED)
    got = await run(seeded_db.dsn, {"versions": [*APPLIED, PENDING]},
                    required_tables=[*SEED_TABLES, "voice_presets"])
    assert got.outcome is Outcome.TABLE_MISSING, got.message
    assert [PENDING] == got.details["pending_migrations"]
    assert PENDING in got.message


async def test_a_directory_gone_at_run_time_is_said_not_compared(seeded_db: SeededDb, tmp_path: Path) -> None:
    """The directory is checked at load; if it disappears later the run says the migrations were not compared
    (migrations_compared false) instead of crashing or claiming they are applied."""
    record(seeded_db, *APPLIED)
    folder = tmp_path / "migrations"
    folder.mkdir()
    check = make_check({"dir": str(folder)})
    folder.rmdir()
    async with deps_for(seeded_db.dsn) as deps:
        got = await run_probe(check, deps)
    assert got.outcome is Outcome.OK, got.message
    assert got.details["migrations_compared"] is False
    assert "migrations not compared" in got.message
    assert "could not be listed" in got.message
    assert "all 0 migrations applied" not in got.message


async def test_a_role_that_cannot_read_the_table_is_said_not_compared(seeded_db: SeededDb) -> None:
    """A monitor role without USAGE/SELECT on supabase_migrations: the run goes on (the refused read is rolled back
    to a savepoint), says the migrations were not compared and how to grant it; it never pages AccessDenied."""
    record(seeded_db, *APPLIED)
    role = f"pamtest_nomig_{uuid.uuid4().hex[:8]}"
    seeded_db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        got = await run(dsn_with(seeded_db.dsn, user=role), {"versions": [*APPLIED, PENDING]}, required_tables=[])
    finally:
        seeded_db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert got.outcome is Outcome.OK, got.message
    assert got.details["migrations_compared"] is False
    assert "cannot read supabase_migrations.schema_migrations (42501; GRANT USAGE ON SCHEMA" in got.message
    assert "pending_migrations" not in got.details


async def test_the_directory_listing_is_bounded(seeded_db: SeededDb, tmp_path: Path) -> None:
    """At most max_files entries are read; the message says the listing was cut."""
    record(seeded_db)
    write(tmp_path, *(f"2024010100{i:04d}" for i in range(5)))
    got = await run(seeded_db.dsn, {"dir": str(tmp_path), "max_files": 3})
    assert got.outcome is Outcome.MIGRATION_PENDING, got.message
    assert 3 == len(got.details["pending_migrations"])
    assert got.details["migrations"]["truncated"] is True
    assert "only the first 3 entries" in got.message


def test_a_missing_directory_or_both_sources_is_refused_at_load(tmp_path: Path) -> None:
    """migrations.dir must be a listable directory; exactly one of dir or versions."""
    with pytest.raises(ValidationError, match="is not a directory"):
        make_check({"dir": str(tmp_path / "nope")})
    with pytest.raises(ValidationError, match="exactly one of dir"):
        make_check({"dir": str(tmp_path), "versions": APPLIED})
    with pytest.raises(ValidationError, match="exactly one of dir"):
        make_check({})
    if os.geteuid() != 0:  # root lists any directory
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o000)
        with pytest.raises(ValidationError, match="cannot be listed"):
            make_check({"dir": str(locked)})


def test_migration_pending_pages_once_per_version_and_resolves_on_a_compared_run() -> None:
    """MigrationPending (warning): one instance per pending version (label version); a compared run without it
    turns the instance GOOD; a run that did not compare (even an ok one) says nothing."""
    config = make_config()
    check = next(c for c in config.checks if c.kind == "db")
    rules = rules_for(config, check, RULES_BY_KIND)
    pending = result(check.name, Outcome.MIGRATION_PENDING,
                     details={"pending_migrations": [PENDING, "20240302000000"], "migrations_compared": True})
    out = evaluate(config, check, pending, CheckMemory(), rules=rules, kind_rules=RULES_BY_KIND["db"])
    bad = sorted((o.alertname, o.labels["version"], o.labels["severity"]) for o in out if o.signal is Signal.BAD)
    assert [("MigrationPending", PENDING, "warning"), ("MigrationPending", "20240302000000", "warning")] == bad
    key = f"MigrationPending/{check.name}/{PENDING}"
    compared = result(check.name, Outcome.OK, details={"migrations_compared": True})
    out = evaluate(config, check, compared, CheckMemory(), {key}, rules=rules, kind_rules=RULES_BY_KIND["db"])
    assert [(key, Signal.GOOD)] == [(o.key, o.signal) for o in out if o.alertname == "MigrationPending"]
    for outcome in (Outcome.TABLE_MISSING, Outcome.OK):  # the directory unreadable at run time: no verdict
        blind = result(check.name, outcome, details={"migrations_compared": False, "table": "x"})
        out = evaluate(config, check, blind, CheckMemory(), {key}, rules=rules, kind_rules=RULES_BY_KIND["db"])
        assert [] == [o for o in out if o.alertname == "MigrationPending"], outcome
