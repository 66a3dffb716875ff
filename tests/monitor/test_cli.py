"""Tests for monitor.cli: validate and check exit codes, output shapes, and the check table/JSON."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.daemon import command
from tests.support.servers import serve_asgi


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=60, cwd=cwd)


def _app() -> Starlette:
    return Starlette(routes=[
        Route("/health", lambda r: JSONResponse({"status": "healthy"})),
        Route("/broken", lambda r: JSONResponse({"detail": "boom"}, status_code=500)),
    ])


def _config(tmp_path: Path, base: str, broken: bool) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(f"""\
        targets:
          backend: {{base_url: "{base}"}}
        checks:
          - {{name: health, kind: http, target: backend, path: /health, expect: {{json: {{status: healthy}}}}}}
        """) + ("  - {name: broken, kind: http, target: backend, path: /broken}\n" if broken else ""))
    return path


def test_validate_ok_and_bad(tmp_path: Path) -> None:
    """validate prints a one-line summary and exits 0, or prints each problem and exits 2."""
    good = _config(tmp_path, "http://127.0.0.1:9", broken=True)
    done = _run("validate", "--config", str(good), cwd=tmp_path)
    assert (0, f"{good}: ok: 2 checks (0 disabled), 1 targets, 0 sinks\n") == (done.returncode, done.stdout)
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: {interval: 1s, timeout: 2s}\nchecks: []\n")
    done = _run("validate", "--config", str(bad), cwd=tmp_path)
    assert 2 == done.returncode
    assert done.stderr.splitlines()[0].startswith(f"{bad}:1: defaults")
    assert "" == done.stdout


def test_check_exit_codes_and_json_shape(tmp_path: Path) -> None:
    """check exits 0 when all pass, 1 when one fails; JSON has exactly the DESIGN §7 keys and no alerts."""
    with serve_asgi(_app()) as base:
        ok = _run("check", "--config", str(_config(tmp_path, base, broken=False)), "--format", "json", cwd=tmp_path)
        failing = _run("check", "--config", str(_config(tmp_path, base, broken=True)), "--format", "json",
                       cwd=tmp_path)
        table = _run("check", "--config", str(_config(tmp_path, base, broken=True)), cwd=tmp_path)
    assert 0 == ok.returncode
    doc = json.loads(failing.stdout)
    assert 1 == failing.returncode
    assert ["checks"] == list(doc)
    assert {"name", "kind", "outcome", "success", "status_code", "duration_s", "message", "finished_at"} <= set(
        doc["checks"][1])
    assert ("broken", "server_error", 500) == (doc["checks"][1]["name"], doc["checks"][1]["outcome"],
                                              doc["checks"][1]["status_code"])
    assert 1 == table.returncode
    assert ["CHECK", "KIND", "OUTCOME", "STATUS", "TIME", "MESSAGE"] == table.stdout.splitlines()[0].split()
    assert "1 ok, 1 failed" == table.stdout.splitlines()[-1]


def test_check_bad_config_exits_two_and_without_config_says_how(tmp_path: Path) -> None:
    """A broken file is exit 2 before any probe runs; no --config at all names the fix."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks: [{name: a, kind: http}]\n")
    assert 2 == _run("check", "--config", str(bad), cwd=tmp_path).returncode
    done = _run("run", cwd=tmp_path)
    assert 2 == done.returncode
    assert "no config file; pass --config FILE" in done.stderr
