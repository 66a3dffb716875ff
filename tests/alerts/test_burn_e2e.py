"""ErrorBudgetBurn through a real `pam-monitor run` process: a check whose SLO has a short burn window (1 minute
over 2 minutes) pages through the webhook when its target answers 500, with the slo and window labels, shows on
/status, and a restart restores the counts from the history the stopped daemon wrote."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.alerting import Recorder
from tests.support.daemon import run_daemon
from tests.support.servers import free_port, serve_asgi

pytestmark = [pytest.mark.e2e, pytest.mark.process]


async def _broken(request: Request) -> JSONResponse:
    return JSONResponse({"status": "down"}, status_code=500)


def _config(tmp_path: Path, backend: str, hook: str) -> Path:
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(textwrap.dedent(f"""\
        service: pam-backend
        state_dir: {tmp_path / "state"}
        log_level: info
        defaults: {{interval: 1s, timeout: 500ms}}
        targets:
          backend: {{base_url: "{backend}"}}
        alerts:
          watchdog: false
          sinks: [{{kind: webhook, name: hook, url: "{hook}"}}]
        checks:
          - name: api
            kind: http
            target: backend
            path: /health
            slo:
              objective: 90%
              window: 1h
              alerts: [{{severity: critical, factor: 2, long: 2m, short: 1m}}]
        """))
    return path


def test_a_real_daemon_pages_on_the_burn_and_restores_its_counts(tmp_path: Path,
                                                                 recorder: tuple[Recorder, str]) -> None:
    """Every run fails (a 2x burn of a 10 % budget needs over 20 % errors): the engine's timer judges the burn
    within its 15 s cadence and the webhook gets ErrorBudgetBurn{slo="api", window="2m", severity="critical"}
    with the burn rates; after a restart the daemon logs the history buckets it restored the counts from."""
    rec, sink = recorder
    app = Starlette(routes=[Route("/health", _broken)])
    with serve_asgi(app) as backend:
        config = _config(tmp_path, backend, f"{sink}/hook")

        def burns() -> list[dict[str, object]]:
            return [a for b in rec.bodies("/hook") for a in b["alerts"]
                    if a["labels"]["alertname"] == "ErrorBudgetBurn"]

        with run_daemon(config, free_port(), tmp_path) as daemon:
            # Generous: the first judgement is at most 15 s after start, on a machine shared with other tests.
            daemon.wait_for(burns, timeout=60, what="the ErrorBudgetBurn page")
            status = [a for a in daemon.status()["alerts"] if a["alertname"] == "ErrorBudgetBurn"]
            assert ["firing"] == [a["state"] for a in status]
        page = burns()[0]
        assert {"alertname": "ErrorBudgetBurn", "service": "pam-backend", "severity": "critical", "slo": "api",
                "window": "2m"} == page["labels"]
        assert float(page["annotations"]["burn_rate_short"]) == pytest.approx(10.0)
        with run_daemon(config, free_port(), tmp_path) as again:
            restored = again.wait_for(
                lambda: [e for e in again.logs() if e.get("event") == "alerts.slo_counts_restored"],
                timeout=20, what="the restore line")
            assert restored[0]["buckets"] >= 1
