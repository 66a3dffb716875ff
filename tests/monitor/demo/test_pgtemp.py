"""TempPostgres and find_pg_bin: a real throwaway cluster is created, served, restarted and removed."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from monitor.demo.pgtemp import PostgresNotFoundError, TempPostgres, TempPostgresError, find_pg_bin

pytestmark = pytest.mark.process  # runs the CLI, the daemon or a stand-in as a process


def test_find_pg_bin_finds_the_server_binaries() -> None:
    """On a machine with PostgreSQL installed, find_pg_bin names a directory holding initdb, pg_ctl, postgres."""
    found = find_pg_bin()
    assert found is not None, "PostgreSQL server binaries are required for the test suite (apt-get install postgresql)"
    assert [] == [name for name in ("initdb", "pg_ctl", "postgres") if not os.access(found / name, os.X_OK)]


def test_lifecycle_serves_sql_then_removes_everything() -> None:
    """start() serves SQL on 127.0.0.1 over TCP; stop() shuts it down and deletes the directory."""
    server = TempPostgres()
    with server:
        directory, port = server.directory, server.port
        assert server.dsn.startswith(f"postgresql://postgres@127.0.0.1:{server.port}/")
        with psycopg.connect(server.dsn) as conn:
            row = conn.execute("SELECT current_setting('fsync'), current_setting('listen_addresses')").fetchone()
        assert ("off", "127.0.0.1") == row
        assert directory.is_dir()
    assert (False, False) == (server.running, directory.exists())
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2)


def test_stop_keeping_data_then_start_again_on_the_same_port() -> None:
    """stop(remove=False) keeps the data: start() brings the same cluster back on the same port."""
    with TempPostgres() as server:
        port = server.port
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
        server.stop(remove=False)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn, connect_timeout=2)
        server.start()
        assert port == server.port
        with psycopg.connect(server.dsn) as conn:
            assert (True,) == conn.execute("SELECT to_regclass('kept') IS NOT NULL").fetchone()


def test_password_mode_requires_the_password_over_tcp() -> None:
    """With password set, TCP logins need it (scram); the DSN carries it."""
    with TempPostgres(password="s3cret-pw") as server:
        with psycopg.connect(server.dsn) as conn:
            assert (1,) == conn.execute("SELECT 1").fetchone()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(server.dsn_for(password="wrong"), connect_timeout=5)


def test_directory_without_binaries_is_a_clear_error(tmp_path: Path) -> None:
    """A bin_dir lacking the server binaries fails at once with how to install PostgreSQL."""
    with pytest.raises(PostgresNotFoundError, match="apt-get install postgresql"):
        TempPostgres(bin_dir=tmp_path)


def test_unknown_run_as_account_is_a_clear_error(tmp_path: Path) -> None:
    """Asking to run the cluster as an OS account that does not exist says so, naming the account,
    and leaves no temp directory behind."""
    with pytest.raises(TempPostgresError, match="pam-monitor-no-such-user"):
        TempPostgres(run_as="pam-monitor-no-such-user", base_dir=tmp_path).start()
    assert [] == list(tmp_path.iterdir())
