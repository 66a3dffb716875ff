"""MonitorBlocked through `pam-monitor run`: the real backend stand-in behind an IP blocker that bans the monitor
after a few endpoints; the daemon pages once for the target, holds the checks' own alerts and never reads ok."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.alerting import Recorder
from tests.support.daemon import run_daemon
from tests.support.refusers import Wall
from tests.support.servers import free_port, serve_asgi
from tests.support.signed_in import JWT_SECRET, MONITOR_SUB, OTHER_SUB, Backend, create_backend_app

pytestmark = pytest.mark.e2e
CHECKS = ("voice_health", "settings_unauth", "settings_isolation")


@pytest.fixture
def wall() -> Iterator[tuple[Wall, str]]:
    """The signed-in backend behind a Wall (open until the test bans the monitor)."""
    state = Backend()
    wall = Wall(create_backend_app(state))
    with serve_asgi(wall) as url:
        yield wall, url


def write_config(tmp_path: Path, backend: str, hook: str) -> Path:
    """A health check, an auth_contract and a tenant_isolation check on one target; a webhook sink."""
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(textwrap.dedent(f"""\
        service: pam-backend
        state_dir: {tmp_path / "state"}
        log_level: warning
        defaults: {{interval: 1s, timeout: 500ms, failure_threshold: 2, success_threshold: 2}}
        targets:
          backend: {{base_url: "{backend}", health_check: voice_health}}
        identities:
          monitor_user: {{mint: {{secret: "{JWT_SECRET}", sub: "{MONITOR_SUB}"}}}}
        alerts:
          watchdog: false
          confirm_delay: 200ms
          sinks: [{{kind: webhook, name: hook, url: "{hook}"}}]
        checks:
          - {{name: voice_health, kind: http, target: backend, path: /api/v1/pam/voice/health}}
          - {{name: settings_unauth, kind: auth_contract, target: backend, forged: [garbage],
             path: "/api/v1/users/{{user_id}}/settings", params: {{user_id: "{OTHER_SUB}"}}}}
          - {{name: settings_isolation, kind: tenant_isolation, target: backend, identity: monitor_user,
             path: "/api/v1/users/{{user_id}}/settings", params: {{user_id: "{OTHER_SUB}"}}}}
        """))
    return path


def test_ip_block_pages_once_and_nothing_reads_ok(tmp_path: Path, wall: tuple[Wall, str],
                                                   recorder: tuple[Recorder, str]) -> None:
    """All checks ok first; then the blocker bans the monitor: MonitorBlocked{target=backend} fires once (the
    webhook's only firing), every check reads a failure that carries foreign_refusal (none reads ok), and the
    checks' own alerts are held behind it."""
    blocker, url = wall
    rec, sink = recorder
    with run_daemon(write_config(tmp_path, url, f"{sink}/hook"), free_port(), tmp_path) as daemon:
        daemon.wait_for(lambda: all(daemon.check(n)["outcome"] == "ok" for n in CHECKS), timeout=30,
                        what="every check ok before the ban")
        blocker.banned = True

        def firing() -> list[dict[str, object]]:
            return [a for a in daemon.status()["alerts"] if a["alertname"] == "MonitorBlocked"
                    and a["state"] == "firing"]

        daemon.wait_for(firing, timeout=30, what="MonitorBlocked firing")
        daemon.wait_for(lambda: len(rec.bodies("/hook")) >= 1, timeout=15, what="the page")
        daemon.wait_for(lambda: {a["alertname"] for a in daemon.status()["alerts"] if a["state"] == "firing"}
                        >= {"MonitorBlocked", "CheckFailed"}, timeout=30, what="the checks' own alerts firing")
        results = {n: daemon.check(n) for n in CHECKS}
        assert {"ok"}.isdisjoint({r["outcome"] for r in results.values()}), results
        assert all(r["details"]["foreign_refusal"]["blocked"] for r in results.values()), results
        assert 1 == len(firing())
        pages = [(b["event"], b["alerts"][0]["labels"]["alertname"]) for b in rec.bodies("/hook")]
        assert [("firing", "MonitorBlocked")] == pages
