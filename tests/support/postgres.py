"""pytest fixtures for a real PostgreSQL: a superuser DSN per session, a fresh seeded database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from monitor.demo.pgtemp import TempPostgres, find_pg_bin
from monitor.demo.schema import SEED_SCHEMA, SEED_TABLES

ENV_DSN = "PAM_MONITOR_TEST_DSN"
INSTALL_HINT = (
    "The database tests need a real PostgreSQL server. Either set PAM_MONITOR_TEST_DSN to a superuser DSN "
    "(e.g. postgresql://postgres@127.0.0.1:5432/postgres) or install the server binaries so a throwaway "
    "cluster can be started: `apt-get install postgresql` (Debian/Ubuntu), `dnf install postgresql-server` "
    "(Fedora) or `brew install postgresql` (macOS)."
)


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A DSN with superuser rights: PAM_MONITOR_TEST_DSN, else a throwaway cluster (fails, never skips)."""
    env = os.environ.get(ENV_DSN)
    if env:
        yield env
        return
    if find_pg_bin() is None:
        pytest.fail(f"no PostgreSQL server binaries found. {INSTALL_HINT}", pytrace=False)
    with TempPostgres() as server:
        yield server.dsn


def dsn_with(dsn: str, **params: Any) -> str:
    """`dsn` with some connection parameters replaced (dbname, user, password...)."""
    return make_conninfo(dsn, **params)


def dsn_param(dsn: str, name: str) -> str | None:
    """One parameter of a DSN (e.g. host, port), or None."""
    value = conninfo_to_dict(dsn).get(name)
    return None if value is None else str(value)


@dataclass(frozen=True)
class SeededDb:
    """A fresh database holding the seed's five tables (RLS on), dropped when the test ends."""

    name: str
    dsn: str
    admin_dsn: str

    def execute(self, statement: str | sql.SQL | sql.Composed, params: tuple[Any, ...] | None = None) -> None:
        """Run one statement in this database as the superuser (autocommit)."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(statement, params)

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit superuser connection to this database (the caller closes it)."""
        return psycopg.connect(self.dsn, autocommit=True)


@pytest.fixture
def seeded_db(pg_dsn: str) -> Iterator[SeededDb]:
    """A database of its own for one test, with SEED_SCHEMA applied; dropped (forcibly) afterwards."""
    name = f"pamtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = dsn_with(pg_dsn, dbname=name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            for statement in SEED_SCHEMA:
                conn.execute(statement)
        yield SeededDb(name=name, dsn=dsn, admin_dsn=pg_dsn)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


__all__ = ["INSTALL_HINT", "SEED_TABLES", "SeededDb", "dsn_param", "dsn_with", "pg_dsn", "seeded_db"]
