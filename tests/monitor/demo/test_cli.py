"""`pam-monitor demo`: the config it writes, its banner, and the real command run end to end on 127.0.0.1."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from monitor.core.config import load_config
from monitor.demo.cli import DSN_VAR, TOKEN_VAR, banner, demo_config
from monitor.demo.schema import SEED_TABLES
from tests.support.daemon import DaemonProcess, command
from tests.support.postgres import SeededDb
from tests.support.servers import free_port

BASE_CHECKS = ["backend_health", "voice_health", "settings_get_unauth", "settings_put_unauth",
               "settings_get_signed_in"]
README_FAULTS = ["settings_500", "settings_open", "drop_table", "voice_down", "hang"]


def write_config(tmp_path: Path, *, with_db: bool, alertmanager: str | None = None) -> Path:
    document = demo_config(target="http://127.0.0.1:8000", listen="127.0.0.1:9108", state_dir=tmp_path / "state",
                           interval=5.0, with_db=with_db, alertmanager=alertmanager)
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------- config and banner


def test_demo_config_without_db_is_valid_and_has_the_five_backend_checks(tmp_path: Path) -> None:
    """Without a database the demo config loads and holds the five backend checks, no db target, no sinks."""
    config = load_config(write_config(tmp_path, with_db=False), environ={TOKEN_VAR: "t"})
    assert BASE_CHECKS == [c.name for c in config.checks]
    assert ["backend"] == sorted(config.targets)
    assert 0 == len(config.alerts.sinks)


def test_demo_config_with_db_adds_the_db_check_on_the_seed_tables(tmp_path: Path) -> None:
    """With a database the config adds db_roundtrip (canary, RLS required) on the seed tables, DSN from $DSN_VAR."""
    path = write_config(tmp_path, with_db=True, alertmanager="http://127.0.0.1:9093")
    config = load_config(path, environ={TOKEN_VAR: "t", DSN_VAR: "postgresql://u@127.0.0.1:5432/d"})
    db = next(c for c in config.checks if c.name == "db_roundtrip")
    assert [*BASE_CHECKS, "db_roundtrip"] == [c.name for c in config.checks]
    assert (list(SEED_TABLES), True) == (list(getattr(db, "required_tables", [])), getattr(db, "require_rls", None))
    assert 1 == len(config.alerts.sinks)
    # The file itself names the secrets only as ${VAR} references.
    text = path.read_text()
    assert (f"${{{TOKEN_VAR}}}" in text, f"${{{DSN_VAR}}}" in text, "postgresql://" in text) == (True, True, False)


def test_banner_shows_where_to_look_and_every_fault_switch(tmp_path: Path) -> None:
    """The banner names the backend, the database line, the status URLs, the config path, and one curl per fault."""
    text = banner(target="http://127.0.0.1:8000", listen="127.0.0.1:9108", config_path=tmp_path / "c.yaml",
                  db_line="not used (--no-db)", interval=5.0)
    for expected in ["http://127.0.0.1:8000", "not used (--no-db)", "http://127.0.0.1:9108/status",
                     str(tmp_path / "c.yaml"), f"kill -HUP {os.getpid()}", "curl -X DELETE http://127.0.0.1:8000/_faults"]:
        assert expected in text
    assert README_FAULTS == re.findall(r"curl -X POST http://127\.0\.0\.1:8000/_faults/(\w+)", text)


# ---------------------------------------------------------------------------------------------- end to end


@contextmanager
def run_demo(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[tuple[DaemonProcess, str]]:
    """Start `pam-monitor demo` on free ports; yield (the daemon, the backend URL) once /healthz answers."""
    listen, target_port = free_port(), free_port()
    log_path = tmp_path / "demo.log"
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    with log_path.open("wb") as sink:
        proc = subprocess.Popen(
            command("demo", "--listen", f"127.0.0.1:{listen}", "--target-port", str(target_port),
                    "--interval", "1s", *extra),
            stdout=sink, stderr=subprocess.STDOUT, env={**environ, **(env or {})}, cwd=str(tmp_path),
        )
    demo = DaemonProcess(proc, f"http://127.0.0.1:{listen}", log_path)
    try:
        demo.wait_for(lambda: demo.get("/healthz").status_code == 200, timeout=60, what="/healthz")
        yield demo, f"http://127.0.0.1:{target_port}"
    finally:
        demo.stop()


def outcomes(demo: DaemonProcess) -> dict[str, str | None]:
    return {c["name"]: c["outcome"] for c in demo.status()["checks"]}


def work_dir(demo: DaemonProcess) -> Path:
    found = re.search(r"config in use\s+(\S+)", demo.raw_logs())
    assert found is not None, demo.raw_logs()[-2000:]
    return Path(found.group(1)).parent


def test_demo_no_db_serves_the_backend_and_watches_it_until_sigterm(tmp_path: Path) -> None:
    """`demo --no-db`: every backend check ok, settings_500 seen as server_error, SIGTERM exits 0 and cleans up."""
    with run_demo(tmp_path, "--no-db") as (demo, backend):
        assert "not used (--no-db)" in demo.raw_logs()
        assert "healthy" == httpx.get(f"{backend}/health", timeout=5).json()["status"]
        all_ok = dict.fromkeys(BASE_CHECKS, "ok")
        demo.wait_for(lambda: outcomes(demo) == all_ok, what="every check ok")
        workdir = work_dir(demo)
        assert True is (workdir / "pam-monitor.yaml").is_file()
        httpx.post(f"{backend}/_faults/settings_500", timeout=5).raise_for_status()
        demo.wait_for(lambda: outcomes(demo)["settings_get_unauth"] == "server_error", what="server_error")
        assert 0 == demo.stop()
    assert False is workdir.exists()


def test_demo_with_database_url_checks_the_tables_and_sees_drop_table(tmp_path: Path, seeded_db: SeededDb) -> None:
    """With $DATABASE_URL the demo adds db_roundtrip: ok, table_missing after drop_table, ok again after healing."""
    with run_demo(tmp_path, env={"DATABASE_URL": seeded_db.dsn}) as (demo, backend):
        assert "$DATABASE_URL" in demo.raw_logs()
        demo.wait_for(lambda: outcomes(demo).get("db_roundtrip") == "ok", what="db_roundtrip ok")
        httpx.post(f"{backend}/_faults/drop_table", timeout=5).raise_for_status()
        demo.wait_for(lambda: outcomes(demo)["db_roundtrip"] == "table_missing", what="table_missing")
        demo.wait_for(lambda: outcomes(demo)["settings_get_signed_in"] == "table_missing", what="signed-in 500")
        httpx.delete(f"{backend}/_faults", timeout=5).raise_for_status()
        demo.wait_for(lambda: set(outcomes(demo).values()) == {"ok"}, what="healed")
        assert 0 == demo.stop()


def test_demo_refuses_a_taken_backend_port(tmp_path: Path) -> None:
    """When the backend port is in use, the demo says so (naming --target-port) and exits 1."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            command("demo", "--no-db", "--listen", f"127.0.0.1:{free_port()}", "--target-port", str(port)),
            capture_output=True, text=True, timeout=60, cwd=str(tmp_path), check=False,
        )
    expected = (f"pam-monitor demo: cannot listen on 127.0.0.1:{port} for the demo backend (port in use?); "
                "pass --target-port")
    assert (1, True, False) == (done.returncode, expected in done.stderr, "Traceback" in done.stderr + done.stdout)
