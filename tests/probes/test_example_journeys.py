"""examples/journeys.yaml end to end: `pam-monitor check` and the daemon run the signed-in checks as they stand
against a signed-in backend stand-in and a real PostgreSQL (only the backend URL and the role name substituted),
catch the seed incident's faults, and show no secret in stdout, /status, /metrics or the logs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from psycopg import sql

from tests.probes.signed_in import EXAMPLE
from tests.support.daemon import command, run_daemon
from tests.support.postgres import SeededDb
from tests.support.servers import free_port
from tests.support.signed_in import JWT_SECRET, Backend

Server = tuple[Backend, str]


def _config(tmp_path: Path, backend_url: str, role: str) -> Path:
    """The example with the stand-in's URL, the test's own role (roles are cluster-wide) and a private state_dir."""
    text = EXAMPLE.read_text()
    for old, new in (("http://127.0.0.1:8000", backend_url), ("as_role: authenticated", f"as_role: {role}"),
                     ("state_dir: ./.pam-monitor", f"state_dir: {tmp_path / 'state'}"),
                     ("interval: 30s, timeout: 5s", "interval: 2s, timeout: 1500ms")):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "journeys.yaml"
    path.write_text(text)
    return path


def _env(db: SeededDb) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAM_MONITOR_")}
    return {**env, "SUPABASE_JWT_SECRET": JWT_SECRET, "DATABASE_URL": db.dsn}


def _check(path: Path, db: SeededDb, cwd: Path) -> tuple[int, dict[str, dict[str, object]], str]:
    done = subprocess.run(command("check", "--config", str(path), "--format", "json"), capture_output=True,
                          text=True, timeout=120, env=_env(db), cwd=cwd)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    return done.returncode, checks, done.stdout + done.stderr


@pytest.mark.process
def test_check_runs_the_example_and_sees_what_users_see(
    tmp_path: Path, backend: Server, seeded_db: SeededDb, app_role: str
) -> None:
    """Healthy: exit 0, all three ok. Then the settings table fails behind the auth wall and the role loses its
    grant: the journey fails at step read naming the table, db_as_user is permission_denied on user_settings,
    the isolation check still passes; exit 1. The JWT secret appears nowhere."""
    state, url = backend
    path = _config(tmp_path, url, app_role)
    code, checks, shown = _check(path, seeded_db, tmp_path)
    assert (0, {"ok"}) == (code, {c["outcome"] for c in checks.values()}), shown

    state.settings_500 = True
    seeded_db.execute(sql.SQL("REVOKE SELECT ON user_settings FROM {}").format(sql.Identifier(app_role)))
    code, checks, shown = _check(path, seeded_db, tmp_path)
    assert 1 == code
    journey = checks["settings_journey"]
    assert ("table_missing", "read", "user_settings") == (
        journey["outcome"], journey["details"]["step"], journey["details"]["table"])  # type: ignore[index]
    assert str(journey["message"]).startswith("step read: GET /api/v1/users/{sub}/settings: expected 200, "
                                              "got 500 after ")
    db = checks["db_as_user"]
    assert ("permission_denied", "user_settings") == (db["outcome"], db["details"]["table"])  # type: ignore[index]
    assert "ok" == checks["settings_isolation"]["outcome"]
    assert JWT_SECRET not in shown


@pytest.mark.process
def test_daemon_times_each_step_and_pages_per_step(
    tmp_path: Path, backend: Server, seeded_db: SeededDb, app_role: str
) -> None:
    """The daemon exports one phase series per step (bounded by the config), fires TableMissing{step=read},
    ContractRegression{step=read, from=200, to=500} and AccessDenied{table} for the faults, and neither /status,
    /metrics nor its log shows the secret or a token."""
    state, url = backend
    path = _config(tmp_path, url, app_role)
    port = free_port()
    with run_daemon(path, port, tmp_path, env=_env(seeded_db)) as daemon:
        phase = 'pam_monitor_db_phase_duration_seconds{check="settings_journey",kind="journey",phase="%s"}'
        daemon.wait_for(lambda: all((daemon.metric(phase % s) or 0) > 0 for s in ("csrf", "read", "write",
                                                                                   "read_back")),
                        what="a timing for every journey step")
        state.settings_500 = True
        seeded_db.execute(sql.SQL("REVOKE SELECT ON user_settings FROM {}").format(sql.Identifier(app_role)))

        def firing() -> set[tuple[str, str, str]]:
            return {(a["alertname"], a["labels"].get("step", ""), a["labels"].get("table", ""))
                    for a in daemon.status()["alerts"] if a["state"] == "firing"}

        expected = {("TableMissing", "read", "user_settings"), ("ContractRegression", "read", ""),
                    ("AccessDenied", "", "user_settings")}
        daemon.wait_for(lambda: expected <= firing(), timeout=30, what=f"{expected} firing")
        regression = next(a["labels"] for a in daemon.status()["alerts"] if a["alertname"] == "ContractRegression")
        assert ("200", "500", "settings_journey") == (regression["from"], regression["to"], regression["check"])
        shown = json.dumps(daemon.status()) + daemon.get("/metrics").text + daemon.raw_logs()
    assert JWT_SECRET not in shown
    assert not any(token in shown for token in state.tokens)
