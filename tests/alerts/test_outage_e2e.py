"""One outage, one page, end to end: `pam-monitor run` watches ten checks on a real backend whose health check
is the target's `health_check`; the backend dies: a webhook gets exactly one notification, and a real Alertmanager
running deploy/alertmanager/alertmanager.yml holds all ten alerts with the nine dependents inhibited."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.alerting import Recorder
from tests.support.alertmanager import BINARY, Alertmanager
from tests.support.daemon import run_daemon
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.e2e

AM_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"
ITEMS = 7


def backend() -> Starlette:
    """A healthy stand-in backend: /health, the protected settings route, and seven item routes."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "healthy"})

    async def settings(request: Request) -> JSONResponse:
        return JSONResponse({"detail": "Not authenticated"}, status_code=403)

    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["n"]})

    return Starlette(routes=[
        Route("/health", health),
        Route("/api/v1/users/{user_id}/settings", settings, methods=["GET", "PUT"]),
        Route("/api/v1/items/{n}", item),
    ])


def config_text(backend_url: str, am: Alertmanager, hook: str, state_dir: Path) -> str:
    """Ten checks on one target whose health_check is backend_health; a webhook and Alertmanager as sinks."""
    checks: list[dict[str, Any]] = [
        {"name": "backend_health", "kind": "http", "target": "backend", "path": "/health",
         "expect": {"status": [200], "json": {"status": "healthy"}}},
        *({"name": f"settings_{m.lower()}_unauth", "kind": "auth_contract", "target": "backend", "method": m,
           "forged": ["garbage"], "path": "/api/v1/users/{user_id}/settings", "params": {"user_id": "u1"}}
          for m in ("GET", "PUT")),
        *({"name": f"item_{n}", "kind": "http", "target": "backend", "path": f"/api/v1/items/{n}"}
          for n in range(ITEMS)),
    ]
    return yaml.safe_dump({
        "service": "pam-backend", "state_dir": str(state_dir),
        "defaults": {"interval": "2s", "timeout": "1500ms", "failure_threshold": 2, "success_threshold": 2},
        "targets": {"backend": {"base_url": backend_url, "health_check": "backend_health"}},
        "checks": checks,
        "alerts": {"confirm_delay": "200ms", "resend_interval": "2s", "watchdog": False,
                   "sinks": [{"kind": "webhook", "url": hook}, {"kind": "alertmanager", "url": am.url}]},
    })


def quiet_deploy_config() -> str:
    """deploy's routing and inhibit rules with receivers that send nothing (no traffic leaves 127.0.0.1)."""
    config = yaml.safe_load(AM_CONFIG.read_text(encoding="utf-8"))
    return yaml.safe_dump({**config, "receivers": [{"name": r["name"]} for r in config["receivers"]]})


def endpoint_down(am: Alertmanager) -> dict[str, dict[str, Any]]:
    """Alertmanager's EndpointDown alerts by check."""
    return {a["labels"]["check"]: a for a in am.alerts_named("EndpointDown")}


def test_backend_killed_pages_once_and_alertmanager_inhibits_the_dependents(tmp_path: Path) -> None:
    """Ten checks see the backend die: one webhook notification (backend_health's EndpointDown); Alertmanager has
    ten EndpointDown alerts, the nine labelled depends_on=backend_health inhibited by the root's."""
    if shutil.which(BINARY) is None:
        pytest.skip(f"{BINARY} is not installed (Debian package prometheus-alertmanager)")
    am = Alertmanager(tmp_path / "alertmanager", config=quiet_deploy_config())
    am.start()
    rec = Recorder()
    with contextlib.ExitStack() as stack:
        stack.callback(am.stop)
        hook = stack.enter_context(serve_asgi(rec.app())) + "/hook"
        target = contextlib.ExitStack()
        stack.enter_context(target)
        url = target.enter_context(serve_asgi(backend()))
        config = tmp_path / "pam-monitor.yaml"
        config.write_text(config_text(url, am, hook, tmp_path / "state"), encoding="utf-8")
        daemon = stack.enter_context(run_daemon(config, free_port(), tmp_path))
        daemon.wait_for(lambda: {c["outcome"] for c in daemon.status()["checks"]} == {"ok"}
                        and len(daemon.status()["checks"]) == 10, timeout=30, what="ten checks ok")

        target.close()  # the backend dies

        alerts = daemon.wait_for(lambda: len(found := endpoint_down(am)) == 10 and found, timeout=60,
                                 what="ten EndpointDown alerts in Alertmanager")
        dependents = set(alerts) - {"backend_health"}
        assert {"backend"} == {a["labels"]["target"] for a in alerts.values()}
        assert {"backend_health"} == {a["labels"].get("depends_on") for name, a in alerts.items()
                                      if name in dependents}
        inhibited = daemon.wait_for(
            lambda: {n for n, a in endpoint_down(am).items() if a["status"]["inhibitedBy"]} == dependents,
            timeout=20, what="the nine dependents inhibited")
        assert inhibited
        root = endpoint_down(am)["backend_health"]
        assert ([], "active") == (root["status"]["inhibitedBy"], root["status"]["state"])
        assert {root["fingerprint"]} == {fp for n in dependents for fp in endpoint_down(am)[n]["status"]["inhibitedBy"]}

        # Every alert has fired and been routed, and the outbox is empty: what the webhook got is final while the
        # backend stays down (the root keeps failing, so nothing held can be released).
        daemon.wait_for(lambda: len(daemon.status()["alerts"]) == 10
                        and {a["state"] for a in daemon.status()["alerts"]} == {"firing"}
                        and daemon.metric("pam_monitor_notification_queue_depth") == 0.0,
                        timeout=20, what="ten firing alerts and an empty outbox")
        bodies = rec.bodies("/hook")
        assert [("firing", "EndpointDown", "backend_health")] == [
            (b["status"], b["alerts"][0]["labels"]["alertname"], b["alerts"][0]["labels"]["check"]) for b in bodies]
