"""The `db` prober (kind `db`); its PostgreSQL round trip lives in probes/_db.py, loaded on the first db run.

psycopg and libpq add about 12 MB to the daemon's RSS (bench/README.md), so a configuration without a db
check never imports them.
"""

from __future__ import annotations

from monitor.core.config import DbCheck
from monitor.core.results import TRANSPORT_OUTCOMES, Outcome, ProbeResult
from probes.deps import Deps

OUTCOMES: tuple[Outcome, ...] = (
    *TRANSPORT_OUTCOMES,
    Outcome.TABLE_MISSING,
    Outcome.COLUMN_MISSING,
    Outcome.RLS_DISABLED,
    Outcome.PERMISSION_DENIED,
    Outcome.POLICY_ERROR,
    Outcome.DB_ERROR,
)


async def probe(check: DbCheck, deps: Deps) -> ProbeResult:
    """One round trip to the check's database; never raises for a broken target."""
    from probes import _db

    return await _db.probe(check, deps)
