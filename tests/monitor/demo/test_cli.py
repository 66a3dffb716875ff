"""`pam-monitor demo`: the config it writes, its banner, and the real command run end to end on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.core.config import load_config
from monitor.demo.cli import banner
from monitor.demo.config import CSRF_VAR, DSN_VAR, MONITOR_USER, SECRET_VAR, demo_config, variables
from monitor.demo.faults import FAULT_NAMES, FAULTS
from monitor.demo.schema import SEED_TABLES
from tests.support.daemon import DaemonProcess, command
from tests.support.postgres import SeededDb
from tests.support.servers import free_port

BASE_CHECKS = ["backend_health", "voice_health", "settings_get_unauth", "settings_put_unauth", "settings_journey",
               "settings_isolation"]
DB_CHECKS = ["db_roundtrip", "db_as_user"]
OWN_CLUSTER_CHECKS = ["db_migrations", "rest_api"]
ENVIRON = {SECRET_VAR: "s" * 40, CSRF_VAR: "c.c", DSN_VAR: "postgresql://u@127.0.0.1:5432/d"}


def write_config(tmp_path: Path, *, with_db: bool, alertmanager: str | None = None) -> Path:
    # With the database, as on the demo's own cluster: its migrations directory too (the config loader wants it).
    migrations = tmp_path / "migrations" if with_db else None
    if migrations is not None:
        migrations.mkdir(exist_ok=True)
    document = demo_config(target="http://127.0.0.1:8000", listen="127.0.0.1:9108", state_dir=tmp_path / "state",
                           interval=5.0, with_db=with_db, alertmanager=alertmanager, migrations_dir=migrations)
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------- config


def test_demo_config_without_db_is_valid_and_has_the_backend_checks(tmp_path: Path) -> None:
    """Without a database the demo config loads: the six backend checks, no db target, no sinks, and
    backend_health as the backend's health check."""
    config = load_config(write_config(tmp_path, with_db=False), environ={SECRET_VAR: "s" * 40, CSRF_VAR: "c.c"})
    assert BASE_CHECKS == [c.name for c in config.checks]
    assert (["backend"], "backend_health") == (sorted(config.targets), config.targets["backend"].health_check)
    assert 0 == len(config.alerts.sinks)


def test_demo_config_with_db_adds_the_db_checks_on_the_seed_tables(tmp_path: Path) -> None:
    """With a database the config adds db_roundtrip (canary, RLS required) and db_as_user (as role authenticated,
    identity monitor_user) on the seed tables, the DSN from $DSN_VAR; with a migrations directory (the demo's own
    cluster) also db_migrations on it and rest_api on monitor_fault_table, consulting the database target."""
    path = write_config(tmp_path, with_db=True, alertmanager="http://127.0.0.1:9093")
    config = load_config(path, environ=ENVIRON)
    by_name = {c.name: c for c in config.checks}
    assert [*BASE_CHECKS, *DB_CHECKS, *OWN_CLUSTER_CHECKS] == list(by_name)
    db, as_user = by_name["db_roundtrip"], by_name["db_as_user"]
    assert (list(SEED_TABLES), True) == (list(getattr(db, "required_tables", [])), getattr(db, "require_rls", None))
    assert (list(SEED_TABLES), "authenticated", "monitor_user") == (
        list(getattr(as_user, "required_tables", [])), getattr(as_user, "as_role", None),
        getattr(as_user, "identity", None))
    assert 1 == len(config.alerts.sinks)
    migrations, rest = by_name["db_migrations"], by_name["rest_api"]
    assert (tmp_path / "migrations", ["monitor_fault_table"], "database") == (
        getattr(getattr(migrations, "migrations", None), "dir", None), list(getattr(rest, "required_tables", [])),
        getattr(rest, "database", None))


def test_demo_config_has_the_design_journeys(tmp_path: Path) -> None:
    """The journey, isolation check and identity are the documented ones: monitor_user minted with the demo's secret,
    four steps csrf/read/write/read_back, another user's settings for isolation. Secrets appear only as ${VAR}."""
    path = write_config(tmp_path, with_db=True)
    document = yaml.safe_load(path.read_text())
    mint = document["identities"]["monitor_user"]["mint"]
    assert (f"${{{SECRET_VAR}}}", MONITOR_USER, "5m") == (mint["secret"], mint["sub"], mint["ttl"])
    checks = {c["name"]: c for c in document["checks"]}
    assert ["csrf", "read", "write", "read_back"] == [s["name"] for s in checks["settings_journey"]["steps"]]
    assert ("tenant_isolation", "monitor_user") == (checks["settings_isolation"]["kind"],
                                                    checks["settings_isolation"]["identity"])
    text = path.read_text()
    assert (True, True, False) == (f"${{{SECRET_VAR}}}" in text, f"${{{DSN_VAR}}}" in text, "postgresql://" in text)
    assert {SECRET_VAR: "k", CSRF_VAR: "c", DSN_VAR: "postgresql://x"} == variables(
        document, secret="k", csrf="c", dsn="postgresql://x")
    put = checks["settings_put_unauth"]["headers"]
    assert {"X-CSRF-Token": f"${{{CSRF_VAR}}}", "Cookie": f"csrf_token=${{{CSRF_VAR}}}"} == put


def test_demo_anonymous_checks_forge_the_path_user(tmp_path: Path) -> None:
    """Both auth_contract checks forge tokens that impersonate the user in the path (forged_claims sub={user_id})."""
    config = load_config(write_config(tmp_path, with_db=False), environ=ENVIRON)
    contracts = [c for c in config.checks if c.kind == "auth_contract"]
    assert [{"sub": "{user_id}"}] * 2 == [getattr(c, "forged_claims", None) for c in contracts]


# ---------------------------------------------------------------------------------------------- banner


def render(tmp_path: Path, *, with_db: bool) -> str:
    config = load_config(write_config(tmp_path, with_db=with_db), environ=ENVIRON)
    exports = {SECRET_VAR: "it's a secret", CSRF_VAR: "n.m",
               **({DSN_VAR: "postgresql://u@127.0.0.1:5432/d"} if with_db else {})}
    return banner(target="http://127.0.0.1:8000", listen="127.0.0.1:9108", config_path=tmp_path / "c.yaml",
                  db_line="the database line", interval=5.0, checks={c.name for c in config.checks},
                  with_db=with_db, exports=exports, severity={"ContractRegression": "critical"})


def test_banner_shows_where_to_look_and_every_fault_with_its_alerts(tmp_path: Path) -> None:
    """The banner names the backend, database, status URLs and config path, and for every fault of the table one
    curl followed by what it does and the alerts it fires; settings_db_500 says what the seed incident teaches."""
    text = render(tmp_path, with_db=True)
    for expected in ["http://127.0.0.1:8000/openapi.json", "the database line", "http://127.0.0.1:9108/status",
                     str(tmp_path / "c.yaml"), f"kill -HUP {os.getpid()}", "curl -X DELETE http://127.0.0.1:8000/_faults",
                     "anonymous checks stay green while the journey pages", "ContractRegression (critical) on"]:
        assert expected in text
    assert list(FAULT_NAMES) == re.findall(r"curl -X POST http://127\.0\.0\.1:8000/_faults/(\w+)", text)
    for fault in FAULTS:
        block = text.split(f"/_faults/{fault.name}\n", 1)[1].split("\n  curl", 1)[0]
        assert fault.effect in block
        assert all(f.alertname in block and f.check in block for f in fault.fires), (fault.name, block)


def test_banner_exports_every_variable_of_the_config_quoted(tmp_path: Path) -> None:
    """The banner prints one shell-quoted export per variable the config reads, then the check command for it."""
    text = render(tmp_path, with_db=True)
    exports = dict(line.removeprefix("  export ").split("=", 1) for line in text.splitlines()
                   if line.startswith("  export "))
    assert {SECRET_VAR: shlex.quote("it's a secret"), CSRF_VAR: "n.m", DSN_VAR: "postgresql://u@127.0.0.1:5432/d"} == (
        exports)
    assert f"  pam-monitor check --config {tmp_path / 'c.yaml'}" in text.splitlines()


def test_banner_without_db_marks_the_database_faults(tmp_path: Path) -> None:
    """Without a database the database faults get no curl line but a note, and no db check is named."""
    text = render(tmp_path, with_db=False)
    assert ["revoke_grants", "rls_recursion", "unapplied_migration", "stale_schema_cache"] == re.findall(
        r"# (\w+): .*\(needs the database", text)
    assert ("db_roundtrip" in text, "db_as_user" in text, DSN_VAR in text) == (False, False, False)
    assert ("db_migrations" in text, "rest_api" in text) == (False, False)


# ---------------------------------------------------------------------------------------------- end to end


@contextmanager
def run_demo(tmp_path: Path, *extra: str, env: dict[str, str] | None = None,
             interval: str = "1s") -> Iterator[tuple[DaemonProcess, str]]:
    """Start `pam-monitor demo` on free ports; yield (the daemon, the backend URL) once /healthz answers."""
    listen, target_port = free_port(), free_port()
    log_path = tmp_path / "demo.log"
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    with log_path.open("wb") as sink:
        proc = subprocess.Popen(
            command("demo", "--listen", f"127.0.0.1:{listen}", "--target-port", str(target_port),
                    "--interval", interval, *extra),
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


def banner_exports(demo: DaemonProcess) -> dict[str, str]:
    """The variables the banner's export lines set, as a shell would after pasting them."""
    return {name: shlex.split(value)[0] for name, value in re.findall(r"^  export (\w+)=(.*)$", demo.raw_logs(), re.M)}


@pytest.mark.process
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


def check_json(config: Path, env: dict[str, str], tmp_path: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """`pam-monitor check --config F --format json` in a subprocess: its exit code and its results by check."""
    base = {k: v for k, v in os.environ.items() if k not in (SECRET_VAR, CSRF_VAR, DSN_VAR)}
    done = subprocess.run(command("check", "--config", str(config), "--format", "json"), capture_output=True,
                          text=True, timeout=60, cwd=str(tmp_path), env={**base, **env}, check=False)
    assert done.stdout.startswith("{"), done.stderr[-2000:]
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


@pytest.mark.process
def test_demo_with_database_url_the_banner_exports_drive_check(tmp_path: Path, seeded_db: SeededDb) -> None:
    """With --database-url the demo watches the db checks too (in its own schema); the banner's export lines are
    enough for `pam-monitor check --config <its config>` in another process (no db_migrations or rest_api there, one
    line says why): all ok, then under settings_db_500 the
    anonymous checks stay ok while the journey fails at step read naming user_settings."""
    # A 4 s interval gives each check a 2 s timeout: `check` is a fresh process on a machine other suites share.
    with run_demo(tmp_path, "--database-url", seeded_db.dsn, interval="4s") as (demo, backend):
        assert "(--database-url), inside the schema pam_monitor_demo only" in demo.raw_logs()
        # ...and without the checks and faults that would reach outside that schema (the config below has neither).
        assert "db_migrations, rest_api and the unapplied_migration and stale_schema_cache faults are off" in (
            demo.raw_logs())
        assert "/_faults/stale_schema_cache\n" not in demo.raw_logs()
        demo.wait_for(lambda: set(outcomes(demo).values()) == {"ok"}, what="every check ok")
        exports = banner_exports(demo)
        assert [SECRET_VAR, CSRF_VAR, DSN_VAR] == list(exports)
        config = work_dir(demo) / "pam-monitor.yaml"
        code, healthy = check_json(config, exports, tmp_path)
        assert (0, [*BASE_CHECKS, *DB_CHECKS]) == (code, list(healthy))
        httpx.post(f"{backend}/_faults/settings_db_500", timeout=5).raise_for_status()
        code, broken = check_json(config, exports, tmp_path)
        journey = broken["settings_journey"]
        assert (1, "table_missing", True, True) == (code, journey["outcome"], "read" in journey["message"],
                                                    "user_settings" in journey["message"])
        failing = sorted(name for name, c in broken.items() if c["outcome"] != "ok")
        assert ["settings_journey"] == failing
        assert 0 == demo.stop()


@pytest.mark.process
def test_demo_refuses_a_taken_backend_port(tmp_path: Path) -> None:
    """When the backend port is in use (a second demo), the demo says so in one line naming --target-port and
    exits 1: no traceback, no banner."""
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
    assert (1, [expected], "") == (done.returncode, done.stderr.splitlines(), done.stdout)


@pytest.mark.process
def test_demo_refuses_a_taken_listen_port_before_the_banner(tmp_path: Path) -> None:
    """When the status/metrics port is in use, the demo says so in one line naming --listen and exits 1 before
    printing the banner or starting a database."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            command("demo", "--listen", f"127.0.0.1:{port}", "--target-port", str(free_port())),
            capture_output=True, text=True, timeout=60, cwd=str(tmp_path), check=False,
        )
    expected = (f"pam-monitor demo: cannot listen on 127.0.0.1:{port} for the status page and metrics "
                "(port in use?); pass --listen")
    assert (1, [expected], "") == (done.returncode, done.stderr.splitlines(), done.stdout)
