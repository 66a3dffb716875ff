"""Daemon-level end to end: `pam-monitor run` against a stand-in backend and a real Alertmanager; kill -9 while
firing, restart, heal: the alert resolves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.alertmanager import Alertmanager
from tests.support.poll import until
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.e2e
CLI = Path(sys.executable).with_name("pam-monitor")


class Backend:
    """A stand-in backend whose settings route answers 403 until broken, then 500."""

    def __init__(self) -> None:
        self.broken = False

    async def settings(self, request: Request) -> JSONResponse:
        if self.broken:
            return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
        return JSONResponse({"detail": "Not authenticated"}, status_code=403)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/v1/users/{user_id}/settings", self.settings)])


def write_config(path: Path, backend_url: str, am: Alertmanager, state_dir: Path) -> str:
    """Write the daemon's config; return its base URL."""
    port = free_port()
    path.write_text(f"""
service: pam-backend
listen: 127.0.0.1:{port}
state_dir: {state_dir}
defaults: {{interval: 1s, timeout: 500ms, failure_threshold: 2, success_threshold: 2}}
targets:
  backend: {{base_url: "{backend_url}"}}
checks:
  - {{name: settings_get_unauth, kind: auth_contract, target: backend, method: GET, forged: [garbage],
     path: "/api/v1/users/{{user_id}}/settings", params: {{user_id: 00000000-0000-0000-0000-000000000000}}}}
alerts:
  resend_interval: 2s
  confirm_delay: 200ms
  sinks:
    - {{kind: alertmanager, url: "{am.url}"}}
""", encoding="utf-8")
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def backend() -> Iterator[tuple[Backend, str]]:
    b = Backend()
    with serve_asgi(b.app()) as url:
        yield b, url


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen([str(CLI), "run", "--config", str(config)], stdout=out, stderr=out,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        out.close()


def last_outcome(base: str) -> str | None:
    try:
        checks = httpx.get(f"{base}/status", timeout=2.0).json()["checks"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return str(checks[0].get("outcome")) if checks else None


def results_counted(base: str, outcome: str) -> float:
    """How many results with this outcome the daemon has counted since it started (0 while it cannot answer)."""
    try:
        text = httpx.get(f"{base}/metrics", timeout=2.0).text
    except httpx.HTTPError:
        return 0.0
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "pam_monitor_check_results" for sample in family.samples
               if sample.name.endswith("_total") and sample.labels.get("outcome") == outcome)


def regressions(am: Alertmanager) -> list[dict[str, Any]]:
    """The active ContractRegression alerts in Alertmanager."""
    return am.alerts_named("ContractRegression")


def test_kill_9_while_firing_restart_heal_resolves(alertmanager: Alertmanager, backend: tuple[Backend, str],
                                                   tmp_path: Path) -> None:
    """The daemon pages 403 -> 500, is killed -9, restarts on the same state_dir, the backend heals: resolved."""
    b, url = backend
    config = tmp_path / "pam-monitor.yaml"
    base = write_config(config, url, alertmanager, tmp_path / "state")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log)
    try:
        until(lambda: alertmanager.alerts_named("MonitorWatchdog"), timeout=30)
        until(lambda: last_outcome(base) == "ok", timeout=30)  # the 403 was seen: it is the `from` side
        b.broken = True
        found = until(lambda: regressions(alertmanager), timeout=30)
        assert ("403", "500") == (found[0]["labels"]["from"], found[0]["labels"]["to"])
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        daemon = start_daemon(config, log)
        # A few runs while still broken: they must not create a second alert.
        until(lambda: results_counted(base, "server_error") >= 3, timeout=30)
        assert 1 == len(regressions(alertmanager)), log.read_text()[-3000:]
        b.broken = False
        until(lambda: not regressions(alertmanager), timeout=30)
        assert "alert.fired" in log.read_text()
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=5)
