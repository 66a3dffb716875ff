"""The `db` prober (kind `db`); its PostgreSQL round trip lives in probes/_db.py, loaded on the first db run.

psycopg and libpq add about 12 MB to the daemon's RSS (bench/README.md), so a configuration without a db
check never imports them.
"""

from __future__ import annotations

from monitor.core.config import DbCheck
from monitor.core.results import TRANSPORT_OUTCOMES, Outcome, ProbeResult
from probes.deps import Deps
from probes.kind import Kind


async def probe(check: DbCheck, deps: Deps, deadline: float) -> ProbeResult:
    """One round trip to the check's database, finished by `deadline`; never raises for a broken target."""
    from probes import _db

    return await _db.probe(check, deps, deadline)


def phases(check: DbCheck) -> tuple[str, ...]:
    """The phases a db check times: connect, query, as_role when it reads as a role, canary when it writes one."""
    return ("connect", "query", *(("as_role",) if check.as_role else ()), *(("canary",) if check.canary else ()))


def tables(check: DbCheck) -> tuple[str, ...]:
    """The tables whose presence a db check reports: required tables and those named in required_columns."""
    return tuple(check.all_tables())


KIND = Kind(
    name="db",
    model=DbCheck,
    probe=probe,
    outcomes=(
        *TRANSPORT_OUTCOMES,
        Outcome.TABLE_MISSING,
        Outcome.COLUMN_MISSING,
        Outcome.RLS_DISABLED,
        Outcome.PERMISSION_DENIED,
        Outcome.POLICY_ERROR,
        Outcome.DB_ERROR,
        Outcome.MIGRATION_PENDING,
        # A db check with an identity that signs in can fail at step sign_in with what the Auth server said.
        Outcome.UNEXPECTED_STATUS,
        Outcome.SERVER_ERROR,
        Outcome.RATE_LIMITED,
        Outcome.INVALID_RESPONSE,
    ),
    alerts=("TableMissing", "SchemaDrift", "DatabaseDown", "AccessDenied", "MigrationPending", "CheckFailed"),
    phases=phases,
    tables=tables,
)
