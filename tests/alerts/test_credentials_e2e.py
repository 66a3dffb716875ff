"""End to end: `pam-monitor run` whose target sends a static `Authorization: Bearer <jwt>` expiring in 2 days and
whose journey acts as a minted identity: MonitorCredentialExpiring fires critical, /metrics exports both
credentials' expiry by name, and the token appears in no log line, no /status and no /metrics."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.daemon import run_daemon
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.e2e
DAY = 86400


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "healthy"})


def test_a_static_token_expiring_in_two_days_pages_critical_and_never_leaks(tmp_path: Path) -> None:
    """Two days left on the target's bearer token: MonitorCredentialExpiring critical in /status labelled
    `credential="api/Authorization"`; /metrics has that expiry and the identity's token's; the token, its payload
    and the mint secret are in no log, /status or /metrics."""
    expiry = int(time.time()) + 2 * DAY
    token = jwt.encode({"role": "service_role", "exp": expiry}, "k" * 32, algorithm="HS256")
    mint_secret = "mint-secret-for-the-e2e-test-0123456789"
    config = tmp_path / "pam-monitor.yaml"
    with serve_asgi(Starlette(routes=[Route("/health", _health)])) as url:
        config.write_text(f"""
service: pam-backend
state_dir: {tmp_path / "state"}
defaults: {{interval: 1s, timeout: 800ms, failure_threshold: 2, success_threshold: 2}}
targets:
  api: {{base_url: "{url}", headers: {{Authorization: "Bearer {token}"}}}}
identities:
  monitor_user: {{mint: {{secret: "{mint_secret}", sub: 7c0f3a8e-0000-4000-8000-000000000001, ttl: 1h}}}}
checks:
  - {{name: api_health, kind: http, target: api, path: /health}}
  - name: as_user
    kind: journey
    target: api
    identity: monitor_user
    steps: [{{name: health, path: /health}}]
""", encoding="utf-8")
        with run_daemon(config, free_port(), tmp_path) as daemon:
            def firing() -> list[dict[str, object]]:
                return [a for a in daemon.status()["alerts"]
                        if a["alertname"] == "MonitorCredentialExpiring" and a["state"] == "firing"]

            alerts = daemon.wait_for(firing, timeout=30, what="MonitorCredentialExpiring firing")
            scrape = daemon.get("/metrics").text
            status = daemon.get("/status").text
            logs = daemon.raw_logs()
    assert {("api_health", "critical", "api/Authorization")} == {
        (a["labels"]["check"], a["labels"]["severity"], a["labels"]["credential"]) for a in alerts  # type: ignore[index]
    }
    series = {s.labels["credential"]: s.value for f in text_string_to_metric_families(scrape)
              if f.name == "pam_monitor_credential_expiry_timestamp_seconds" for s in f.samples}
    assert expiry == series["api/Authorization"]
    assert time.time() + 30 * 60 < series["identity/monitor_user"] <= time.time() + 3600
    assert "MonitorCredentialExpiring" in logs  # the log read for leaks is the one that told of the alert
    for text in (scrape, status, logs):
        assert token not in text
        assert token.split(".")[1] not in text
        assert mint_secret not in text
