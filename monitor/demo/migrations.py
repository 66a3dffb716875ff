"""The demo's own Supabase-style migrations: a directory of `<version>_<name>.sql` files and their record in
supabase_migrations.schema_migrations, which the `unapplied_migration` fault puts out of step.

Only for the throwaway cluster the demo made itself: the schema supabase_migrations is created there, never in a
database given with --database-url.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

APPLIED: tuple[str, ...] = ("20260101000000_init.sql", "20260102000000_settings.sql")
"""The migration files the demo writes at start and records as applied."""

FAULT_MIGRATION = "20260103000000_monitor_fault.sql"
"""The file the `unapplied_migration` fault adds (and healing removes): in the directory, never applied."""

FAULT_VERSION = FAULT_MIGRATION.split("_", 1)[0]
"""The version of FAULT_MIGRATION, as MigrationPending's `version` label names it."""

# The Supabase CLI's own table (its `supabase_migrations` schema), as `supabase db push` creates it.
_DDL = (
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations "
    "(version text PRIMARY KEY, statements text[], name text)",
)


def _version(name: str) -> str:
    return name.split("_", 1)[0]


def _write_applied(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in APPLIED:
        (directory / name).write_text(f"-- {name}: written by pam-monitor demo, recorded as applied\n")


async def prepare_migrations(dsn: str, directory: Path) -> None:
    """Write APPLIED into `directory` (created when missing) and record them as applied at `dsn`."""
    _write_applied(directory)  # three tiny files in a fresh temporary directory: not worth a thread
    # Not autocommit: one transaction, committed when the block ends (rolled back on an error).
    async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=10) as conn:
        for statement in _DDL:
            await conn.execute(statement)
        for name in APPLIED:
            await conn.execute(
                "INSERT INTO supabase_migrations.schema_migrations (version, statements, name) "
                "VALUES (%s, ARRAY[]::text[], %s) ON CONFLICT (version) DO NOTHING",
                (_version(name), name.removesuffix(".sql").split("_", 1)[1]))


def add_pending(directory: Path) -> None:
    """The `unapplied_migration` fault: a migration file the database has no record of."""
    (directory / FAULT_MIGRATION).write_text("-- written by the demo's unapplied_migration fault; never applied\n")


def remove_pending(directory: Path) -> None:
    """Heal: the file is gone again (as if the branch that added it was reverted)."""
    (directory / FAULT_MIGRATION).unlink(missing_ok=True)


__all__ = ["APPLIED", "FAULT_MIGRATION", "FAULT_VERSION", "add_pending", "prepare_migrations", "remove_pending"]
