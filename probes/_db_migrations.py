"""A `db` check's `migrations`: the repository's migration versions against supabase_migrations.schema_migrations.

The Supabase CLI names a migration `<version>_<name>.sql` (version: the leading digits, a 14-digit UTC timestamp)
and records each applied one in `supabase_migrations.schema_migrations(version)`. A version in the directory and
not in that table is pending (`migration_pending`, one MigrationPending per version); a version applied but absent
from the directory is reported in the details and the message, never paged (a migration squashed or written on
another branch). Only file names are read, at most `max_files` directory entries per run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
import structlog

from monitor.core.config import MIGRATION_FILE, Migrations
from monitor.core.results import Outcome, ProbeResult

log = structlog.get_logger("pam_monitor.probe.db")

TABLE = "supabase_migrations.schema_migrations"
# pg_class, not to_regclass: the latter needs USAGE on the schema, and a role without it must still learn that the
# table exists (and then be told it cannot read it).
SQL_TABLE_PRESENT = (
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = 'supabase_migrations' AND c.relname = 'schema_migrations')"
)
SQL_APPLIED = "SELECT version::text FROM supabase_migrations.schema_migrations"
LISTED = 50
"""At most this many versions are named in a message; the details hold up to DETAILED."""
DETAILED = 200


@dataclass
class Comparison:
    """What one run found: versions pending and unrecorded, or why they could not be compared."""

    files: dict[str, str] = field(default_factory=dict)  # version -> file name (or the version itself)
    applied: set[str] = field(default_factory=set)
    table_present: bool = True
    truncated: bool = False
    error: str | None = None

    @property
    def pending(self) -> list[str]:
        """Versions in the repository and not applied (none when the two could not be compared)."""
        return [] if self.error is not None else sorted(set(self.files) - self.applied)

    @property
    def unrecorded(self) -> list[str]:
        """Versions applied and not in the repository (none when the two could not be compared)."""
        return [] if self.error is not None else sorted(self.applied - set(self.files))


def repository_versions(spec: Migrations) -> Comparison:
    """The versions the repository holds: from `versions`, or the names in `dir` (at most max_files entries)."""
    found = Comparison()
    if spec.versions is not None:
        found.files = {v: v for v in spec.versions}
        return found
    assert spec.dir is not None
    try:
        with os.scandir(spec.dir) as entries:
            for seen, entry in enumerate(entries):
                if seen >= spec.max_files:
                    found.truncated = True
                    break
                match = MIGRATION_FILE.match(entry.name)
                if match is not None:
                    found.files[match.group(1)] = entry.name
    except OSError as exc:
        # Checked at load; gone or unreadable since (a deploy moved it): say so, never a probe crash.
        found.error = f"the migrations directory {str(spec.dir)!r} could not be listed ({exc.strerror or exc})"
    return found


async def compare(conn: psycopg.AsyncConnection[Any], spec: Migrations) -> Comparison:
    """Read the directory and the applied versions (inside the run's transaction, under its statement_timeout)."""
    found = repository_versions(spec)
    if found.error is not None:
        return found
    cur = await conn.execute(SQL_TABLE_PRESENT)
    row = await cur.fetchone()
    found.table_present = bool(row and row[0])
    if found.table_present:
        try:
            async with conn.transaction():  # a savepoint: a refused read leaves the run's transaction usable
                cur = await conn.execute(SQL_APPLIED)
                found.applied = {str(version) for (version,) in await cur.fetchall()}
        except psycopg.errors.InsufficientPrivilege:
            found.error = (f"the monitor's database role cannot read {TABLE} (42501; GRANT USAGE ON SCHEMA "
                           f"supabase_migrations and SELECT ON {TABLE} to it)")
    return found


def _names(versions: list[str], files: dict[str, str]) -> str:
    shown = [files.get(v, v) for v in versions[:LISTED]]
    more = f" and {len(versions) - LISTED} more" if len(versions) > LISTED else ""
    return ", ".join(shown) + more


def details_of(found: Comparison) -> dict[str, Any]:
    """What goes into the result's details: `migrations` (counts and lists), `pending_migrations` (the versions
    MigrationPending pages for) and `migrations_compared` (whether the comparison was made at all)."""
    if found.error is not None:
        return {"migrations": {"error": found.error}, "migrations_compared": False}
    pending = found.pending
    summary: dict[str, Any] = {
        "files": len(found.files), "applied": len(found.applied), "table_present": found.table_present,
        "pending": pending[:DETAILED], "unrecorded": found.unrecorded[:DETAILED],
    }
    if found.truncated:
        summary["truncated"] = True
    out: dict[str, Any] = {"migrations": summary, "migrations_compared": True}
    if pending:
        out["pending_migrations"] = pending[:DETAILED]
    return out


def note_of(found: Comparison, spec: Migrations) -> str:
    """The sentence the result's message gains ("" when everything in the directory is applied)."""
    if found.error is not None:
        return f"migrations not compared: {found.error}"
    parts = []
    pending = found.pending
    if pending and not found.table_present:
        parts.append(f"{TABLE} does not exist, so no migration was ever applied through the Supabase CLI: "
                     f"{len(pending)} pending ({_names(pending, found.files)})")
    elif pending:
        parts.append(f"{len(pending)} migration{'s' if len(pending) > 1 else ''} not applied: "
                     f"{_names(pending, found.files)}")
    unrecorded = found.unrecorded
    if unrecorded:
        parts.append(f"applied in the database but not in the repository: {_names(unrecorded, {})}")
    if found.truncated:
        parts.append(f"only the first {spec.max_files} entries of the directory were read (raise max_files)")
    return "; ".join(parts)


def verdict(result: ProbeResult, found: Comparison | None, spec: Migrations | None, check: str) -> ProbeResult:
    """The run's result with the comparison in it: a passing run with pending versions is migration_pending;
    any other outcome stays (it is graver) and its message names the pending versions too."""
    if found is None or spec is None:
        return result
    details = {**result.details, **details_of(found)}
    note = note_of(found, spec)
    if found.error is not None:
        log.warning("db.migrations_not_compared", check=check, error=found.error)
    if result.outcome is Outcome.OK and found.pending:
        return replace(result, outcome=Outcome.MIGRATION_PENDING, message=f"{note} ({result.message})",
                       details=details)
    message = f"{result.message}; {note}" if note else result.message
    if result.outcome is Outcome.OK and found.error is None:
        message += f"; all {len(found.files)} migrations applied"
    return replace(result, message=message, details=details)
