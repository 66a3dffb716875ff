"""PostgreSQL connection facts shared by the db prober and the demo's store (both keep a connection between uses)."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors


def is_stale_connection(exc: BaseException) -> bool:
    """Whether a failure on a reused connection means only that connection died (worth one fresh retry).

    An interface error, or an operational error that is not a connect timeout and carries no SQLSTATE, a class 08
    (connection exception) one, or 57P01/57P02 (admin/crash shutdown).
    """
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, pg_errors.ConnectionTimeout):
        state = exc.sqlstate
        return state is None or state.startswith("08") or state in ("57P01", "57P02")
    return False
