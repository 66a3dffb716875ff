"""`state_dir` against real daemon processes: a second daemon on the same state_dir is refused (exit 3, one line
naming the holder), and a database whose -wal and -shm are deleted under a running daemon is rewritten, so a
kill -9 afterwards does not repeat a page."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerts.persist.database import FILENAME
from alerts.persist.lock import LOCK_NAME
from tests.support.alerting import Recorder
from tests.support.daemon import command, run_daemon, write_http_checks_config
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.e2e


def _broken() -> Starlette:
    """A backend whose /health always answers 500 (EndpointDown fires on every check of it)."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "down"}, status_code=500)

    return Starlette(routes=[Route("/health", health)])


def _firings(rec: Recorder) -> list[str]:
    """The alertname of every firing the webhook stand-in received, in order."""
    return [b["alerts"][0]["labels"]["alertname"] for b in rec.bodies("/hook") if b["status"] == "firing"]


def test_a_second_daemon_on_the_same_state_dir_exits_3_naming_the_holder(tmp_path: Path) -> None:
    """While one daemon runs, a second one started with the same state_dir (another listen port) exits 3 and
    prints exactly one line on stderr naming the first one's pid and the state_dir; the first one keeps running
    and the lock file holds its pid. (Before, both ran and every page went out twice.)"""
    rec = Recorder()
    with serve_asgi(rec.app()) as hook, serve_asgi(_broken()) as target:
        config = write_http_checks_config(tmp_path, target=target, hook=hook + "/hook", service="lock", checks=1,
                                          interval="1s", timeout="500ms")
        with run_daemon(config, free_port(), tmp_path) as first:
            first.wait_for(lambda: (tmp_path / "state" / LOCK_NAME).exists(), what="the lock file")
            second = subprocess.run(
                command("run", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}"),
                capture_output=True, timeout=60, cwd=str(tmp_path), check=False,
            )
            assert 3 == second.returncode, second.stderr
            lines = second.stderr.decode().splitlines()
            assert 1 == len(lines), lines
            assert f"pid {first.proc.pid}" in lines[0]
            assert str(tmp_path / "state") in lines[0]
            assert first.proc.poll() is None
            assert f"{first.proc.pid}" == (tmp_path / "state" / LOCK_NAME).read_text().strip()


def test_a_lock_left_by_a_killed_daemon_does_not_block_a_restart(tmp_path: Path) -> None:
    """kill -9 leaves the lock file behind with a dead pid in it; the kernel dropped the lock with the process,
    so the next daemon on that state_dir starts and writes its own pid."""
    rec = Recorder()
    with serve_asgi(rec.app()) as hook, serve_asgi(_broken()) as target:
        config = write_http_checks_config(tmp_path, target=target, hook=hook + "/hook", service="lock", checks=1,
                                          interval="1s", timeout="500ms")
        with run_daemon(config, free_port(), tmp_path) as first:
            first.wait_for(lambda: (tmp_path / "state" / LOCK_NAME).exists(), what="the lock file")
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        with run_daemon(config, free_port(), tmp_path) as second:
            second.wait_for(lambda: second.get("/readyz").status_code == 200, what="readiness after the restart")
            assert f"{second.proc.pid}" == (tmp_path / "state" / LOCK_NAME).read_text().strip()


def test_deleted_wal_and_shm_then_kill_9_does_not_repeat_a_page(tmp_path: Path) -> None:
    """A daemon pages (EndpointDown to a webhook); its database's -wal and -shm are deleted; the daemon logs
    alerts.state_files_replaced naming them and rewrites its state into fresh files (alerts.state_rewritten);
    after kill -9 and a restart on the same state_dir the still-failing check does not page again. (Before:
    nothing was logged, the restart read "states": 0 and the webhook got the same firing again.)"""
    rec = Recorder()
    state = tmp_path / "state"
    with serve_asgi(rec.app()) as hook, serve_asgi(_broken()) as target:
        config = write_http_checks_config(tmp_path, target=target, hook=hook + "/hook", service="wal", checks=1,
                                          interval="500ms", timeout="400ms")
        with run_daemon(config, free_port(), tmp_path) as first:
            first.wait_for(lambda: _firings(rec) == ["EndpointDown"], what="the first page")
            first.wait_for(lambda: first.metric("pam_monitor_notification_queue_depth") == 0.0, what="empty outbox")
            for suffix in ("-wal", "-shm"):
                os.unlink(state / (FILENAME + suffix))
            # Found at the next write or by the periodic check (every 5 s), whichever comes first.
            replaced = first.wait_for(
                lambda: [e for e in first.logs() if e.get("event") == "alerts.state_files_replaced"],
                what="alerts.state_files_replaced")
            assert {str(state / (FILENAME + "-wal")), str(state / (FILENAME + "-shm"))} <= set(replaced[0]["files"])
            assert "error" == replaced[0]["level"]
            # The rewrite comes at the next write after the discovery: kill only once it is on disk (on a busy
            # machine the kill could otherwise land between the two and test nothing but the timing).
            first.wait_for(lambda: [e for e in first.logs() if e.get("event") == "alerts.state_rewritten"],
                           what="alerts.state_rewritten")
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=10)
        with run_daemon(config, free_port(), tmp_path) as second:
            # Several runs of the failing check after the restart: a forgotten alert would fire again by now.
            second.wait_for(lambda: len(second.check("c000")["history"]) >= 6, what="six runs after the restart")
            second.wait_for(lambda: second.metric("pam_monitor_notification_queue_depth") == 0.0, what="empty outbox")
            assert ["EndpointDown"] == _firings(rec)
            assert any(a["alertname"] == "EndpointDown" and a["state"] == "firing" for a in second.status()["alerts"])
