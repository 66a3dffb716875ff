"""One outage, one page, end to end: `pam-monitor run` watches ten checks on a real backend whose health check
is the target's `health_check`; the backend dies: a webhook gets exactly one notification, and a real Alertmanager
running deploy/alertmanager/alertmanager.yml holds all ten alerts with the nine dependents inhibited."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any, cast

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


def backend_with_a_broken_route() -> Starlette:
    """The stand-in backend plus /api/v1/profile, whose body never matches its check's expectation (a CheckFailed
    that fires before any outage)."""

    async def profile(request: Request) -> JSONResponse:
        return JSONResponse({"status": "degraded"})

    app = backend()
    app.router.routes.append(Route("/api/v1/profile", profile))
    return app


def test_backend_killed_and_restarted_posts_one_firing_and_one_resolution(tmp_path: Path) -> None:
    """Issue 17 row 5, end to end: `pam-monitor run` watches eleven checks; profile's CheckFailed is firing (and
    posted) before the backend dies. The backend is killed for a while, then restarted on the same port: the
    webhook stand-in gets exactly one firing and one resolution for the root (EndpointDown backend_health), the
    root's firing lists no alert that began before the outage, profile's CheckFailed is neither resolved nor
    re-fired (it keeps its startsAt), and nothing stale comes after the recovery (waited past the hold bound)."""
    rec = Recorder()
    port = free_port()
    with contextlib.ExitStack() as stack:
        hook = stack.enter_context(serve_asgi(rec.app())) + "/hook"
        target = contextlib.ExitStack()
        stack.enter_context(target)
        url = target.enter_context(serve_asgi(backend_with_a_broken_route(), port=port))
        config = tmp_path / "pam-monitor.yaml"
        config.write_text(_webhook_config(url, hook, tmp_path / "state"), encoding="utf-8")
        daemon = stack.enter_context(run_daemon(config, free_port(), tmp_path))

        def posts() -> list[tuple[str, str, str, str]]:
            return [(b["status"], b["alerts"][0]["labels"]["alertname"], b["alerts"][0]["labels"]["check"],
                     b["alerts"][0]["startsAt"]) for b in rec.bodies("/hook")]

        daemon.wait_for(lambda: [p[:3] for p in posts()] == [("firing", "CheckFailed", "profile")], timeout=30,
                        what="profile's CheckFailed posted before the outage")
        daemon.wait_for(lambda: {c["name"]: c["outcome"] for c in daemon.status()["checks"]}.get("item_0") == "ok",
                        timeout=20, what="the other checks ok")
        before = posts()[0][3]

        target.close()  # the backend dies
        daemon.wait_for(lambda: ("firing", "EndpointDown", "backend_health") in [p[:3] for p in posts()], timeout=30,
                        what="the root's page")
        daemon.wait_for(lambda: sum(1 for a in daemon.status()["alerts"] if a["alertname"] == "EndpointDown") == 11,
                        timeout=30, what="eleven EndpointDown alerts (ten held)")
        time.sleep(4.0)  # the outage goes on for two more intervals

        restarted = stack.enter_context(serve_asgi(backend_with_a_broken_route(), port=port))
        assert restarted == url
        daemon.wait_for(lambda: ("resolved", "EndpointDown", "backend_health") in [p[:3] for p in posts()],
                        timeout=30, what="the root's resolution")
        daemon.wait_for(lambda: [(a["alertname"], a["labels"]["check"]) for a in daemon.status()["alerts"]]
                        == [("CheckFailed", "profile")], timeout=30, what="only profile's CheckFailed left")
        time.sleep(6.0)  # past every hold bound (interval + timeout: 3.5 s): a stale release would come now
        sent = posts()
        alerts = daemon.status()["alerts"]
    firing = next(p for p in rec.bodies("/hook") if p["status"] == "firing"
                  and p["alerts"][0]["labels"]["check"] == "backend_health")
    assert [("firing", "CheckFailed", "profile"), ("firing", "EndpointDown", "backend_health"),
            ("resolved", "EndpointDown", "backend_health")] == [p[:3] for p in sent]
    also = firing["alerts"][0]["annotations"].get("also_failing", "")
    assert "profile (EndpointDown)" in also or "profile" not in also  # listed only with what began in the outage
    assert "CheckFailed" not in also
    assert [("CheckFailed", "profile", before)] == [(a["alertname"], a["labels"]["check"], a["since"])
                                                    for a in alerts]


def _webhook_config(backend_url: str, hook: str, state_dir: Path) -> str:
    """The ten checks of config_text plus profile (a JSON expectation its answer never meets), a webhook only."""
    raw = yaml.safe_load(config_text(backend_url, cast(Alertmanager, _NoAlertmanager()), hook, state_dir))
    raw["checks"].append({"name": "profile", "kind": "http", "target": "backend", "path": "/api/v1/profile",
                          "expect": {"status": [200], "json": {"status": "healthy"}}})
    raw["alerts"]["sinks"] = [{"kind": "webhook", "url": hook}]
    return yaml.safe_dump(raw)


class _NoAlertmanager:
    """Stands in for an Alertmanager in config_text when only the webhook is wanted (its sink is dropped)."""

    url = "http://127.0.0.1:1"
