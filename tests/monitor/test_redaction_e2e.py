"""Redaction against the real daemon: secrets whose first characters are everyday words (`http`, `post`,
`csrf_token=`, `create_`) are hidden, and the names that share those characters (a kind, a check, a journey step)
stay readable in logs, /status, the page, alert keys and webhook payloads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.core.secrets import REDACTED
from tests.support.alerting import Recorder
from tests.support.daemon import run_daemon
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.e2e

SECRETS = {
    "X-Http": "httpKEY-3f9a0c7e51d2",
    "X-Post": "postKEY-8b1e4d2a9c70",
    "X-Csrf": "csrf_token=5e0d9b3c7a1f",
    "X-Create": "create_KEY-a7c2e9f04b13",
}
"""Webhook header values (secrets): each starts with the end of a name below."""
NAMES = {"create_post": "http", "signup": "journey"}
"""Check name -> kind. `http` is the start of one secret, `create_post` ends with another's, and the journey's
step is `create` (the start of a third)."""


def _backend() -> Starlette:
    """Answers 500 everywhere, and echoes the CSRF-looking secret's start in its body (a target quoting it)."""

    async def broken(request: Request) -> Response:
        return JSONResponse({"detail": "failed near csrf_token="}, status_code=500)

    return Starlette(routes=[Route("/{path:path}", broken, methods=["GET", "POST"])])


def _config(tmp_path: Path, target: str, hook: str) -> Path:
    headers = ", ".join(f'{k}: "{v}"' for k, v in SECRETS.items())
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(textwrap.dedent(f"""\
        service: redaction
        state_dir: {tmp_path / "state"}
        defaults: {{interval: 500ms, timeout: 400ms}}
        targets:
          backend: {{base_url: "{target}"}}
        alerts:
          sinks: [{{kind: webhook, name: hook, url: "{hook}/hook", headers: {{{headers}}}}}]
        checks:
          - {{name: create_post, kind: http, target: backend, path: /posts}}
          - name: signup
            kind: journey
            target: backend
            steps:
              - {{name: create, method: POST, path: /signup, expect: {{status: [200]}}}}
        """))
    return path


def test_identifiers_sharing_characters_with_secrets_are_never_redacted(tmp_path: Path) -> None:
    """Both checks fail and page. Every log line's check, kind and step fields, /status's names and kinds, the
    page, the alerts' keys and labels and the webhook payloads carry the names whole (before: `"kind":
    "**********"`, `create_**********`, `step=**********`), and no secret appears in the logs or /status."""
    rec = Recorder()
    with serve_asgi(rec.app()) as hook, serve_asgi(_backend()) as target, \
            run_daemon(_config(tmp_path, target, hook), free_port(), tmp_path) as daemon:
        daemon.wait_for(lambda: len({b["alerts"][0]["labels"]["check"] for b in rec.bodies("/hook")}) == 2,
                        what="a page from each check")
        status = daemon.status()
        page = daemon.get("/").text
        logs = daemon.logs()
        raw = daemon.raw_logs()
    assert NAMES == {c["name"]: c["kind"] for c in status["checks"]}
    alerts = [a for a in status["alerts"] if a["alertname"] != "MonitorWatchdog"]
    assert {("create_post", "http", None), ("signup", "journey", "create")} == {
        (a["labels"]["check"], a["labels"]["kind"], a["labels"].get("step")) for a in alerts}
    for name in NAMES:
        assert name in page
    for line in logs:
        for field in ("check", "kind", "step", "key", "alert"):
            assert REDACTED not in str(line.get(field, "")), line
    kinds = {line["kind"] for line in logs if "kind" in line and line.get("check") in NAMES}
    assert kinds <= set(NAMES.values())
    assert "http" in kinds
    keys = {line["key"] for line in logs if "key" in line and line.get("check") in NAMES}
    assert keys
    assert all(REDACTED not in k for k in keys)
    assert any("create" in k for k in keys if "signup" in k)
    payload_labels = [b["alerts"][0]["labels"] for b in rec.bodies("/hook")]
    assert {("create_post", "http", None), ("signup", "journey", "create")} <= {
        (lab["check"], lab["kind"], lab.get("step")) for lab in payload_labels}
    assert REDACTED not in str(payload_labels)
    for secret in SECRETS.values():
        assert secret not in raw
        assert secret not in str(status)
        assert secret not in page
