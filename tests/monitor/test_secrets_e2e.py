"""A target that echoes pieces of the credentials it was sent: the bare token of `Authorization: Bearer`, cut by the
200-character excerpt in its middle, and a JWT's signature alone. Neither the pieces nor a 4-character start of
them reaches /status, the webhook's payloads, the SQLite state, the logs or `check --format json`."""

from __future__ import annotations

import json
import subprocess
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.daemon import command, run_daemon
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.process  # starts the daemon, a stand-in target or another binary as a process

TOKEN = "Zq7xTokenOnly-4d1e9c2b7a5f3e8d"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtb25pdG9yIiwicm9sZSI6InNlcnZpY2Vfcm9sZSJ9"
       ".Wk4pSigOnly9fQ2mL7vR3tY8uN1bX6cE0hJ5kD2sA4g")
SIGNATURE = JWT.rsplit(".", 1)[1]
PAD = 200 - len('{"detail":"') - 8  # the excerpt's 200-character cut falls 8 characters into the token


def _leaky() -> Starlette:
    async def token(request: Request) -> Response:
        # A careless backend: the bare token, placed so that a 200-character excerpt cuts it in the middle.
        bare = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        return JSONResponse({"detail": "x" * PAD + bare + " was refused"}, status_code=500)

    async def signature(request: Request) -> Response:
        sent = (request.headers.get("authorization") or "").rsplit(".", 1)[-1]
        return JSONResponse({"detail": f"signature {sent} does not verify"}, status_code=500)

    return Starlette(routes=[Route("/token", token), Route("/signature", signature)])


class Hook:
    """A webhook sink that keeps every payload it gets."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            with self.lock:
                self.bodies.append(json.loads(await request.body()))
            return Response(status_code=200)

        return Starlette(routes=[Route("/hook", receive, methods=["POST"])])


def _config(tmp_path: Path, target: str, hook: str) -> Path:
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(textwrap.dedent(f"""\
        service: leak-test
        state_dir: {tmp_path / "state"}
        shutdown_timeout: 5s
        defaults: {{interval: 1s, timeout: 500ms, failure_threshold: 1}}
        targets:
          plain: {{base_url: "{target}", headers: {{Authorization: "Bearer ${{LEAK_TOKEN}}"}}}}
          jwt: {{base_url: "{target}", headers: {{Authorization: "Bearer ${{LEAK_JWT}}"}}}}
        checks:
          - {{name: token_echo, kind: http, target: plain, path: /token}}
          - {{name: signature_echo, kind: http, target: jwt, path: /signature}}
        alerts:
          confirm_delay: 100ms
          sinks: [{{kind: webhook, url: "{hook}/hook"}}]
        """))
    return path


def _leaks(text: str) -> list[str]:
    """Which secret pieces, or 4-character starts of them, appear in `text`."""
    pieces = [TOKEN, SIGNATURE, TOKEN[:4], SIGNATURE[:4]]
    return [piece for piece in pieces if piece in text]


def test_echoed_token_pieces_reach_no_surface(tmp_path: Path) -> None:
    """Both checks fail and page through the webhook; every surface then shows the redaction mark and no piece
    or 4-character start of the token or the signature."""
    env = {"LEAK_TOKEN": TOKEN, "LEAK_JWT": JWT}
    hook = Hook()
    with serve_asgi(_leaky()) as target, serve_asgi(hook.app()) as hook_url:
        config = _config(tmp_path, target, hook_url)
        with run_daemon(config, free_port(), tmp_path, env=env) as daemon:
            def paged() -> bool:
                with hook.lock:
                    text = json.dumps(hook.bodies)
                return "token_echo" in text and "signature_echo" in text

            daemon.wait_for(paged, what="both checks paging through the webhook")
            status = daemon.get("/status").text
        checked = subprocess.run(command("check", "--config", str(config), "--format", "json"), capture_output=True,
                                 timeout=60, cwd=tmp_path, env={**env, "PATH": "/usr/bin:/bin"}, check=False)
        logs = daemon.raw_logs()
    state = b"".join(p.read_bytes() for p in (tmp_path / "state").iterdir() if p.is_file()).decode("latin-1")
    with hook.lock:
        payloads = json.dumps(hook.bodies)
    assert 1 == checked.returncode, checked.stderr.decode()[-2000:]
    output = checked.stdout.decode()
    surfaces = {"status": status, "webhook": payloads, "sqlite": state, "logs": logs, "check_json": output,
                "check_stderr": checked.stderr.decode()}
    assert {} == {name: _leaks(text) for name, text in surfaces.items() if _leaks(text)}
    assert "**********" in status
    assert "**********" in output
