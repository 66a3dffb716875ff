"""Tests for monitor.daemon through the real `pam-monitor run` process: truth on every endpoint, SIGTERM, SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.daemon import command, run_daemon
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.process  # runs the CLI, the daemon or a stand-in as a process

SHUTDOWN_TIMEOUT_S = 2.0  # the config's shutdown_timeout
EXIT_SLACK_S = 1.5  # interpreter teardown after the drain: generous, since other suites share the machine


class Switchable:
    """A target whose /health status can be flipped and whose /hang never answers."""

    def __init__(self) -> None:
        self.status = 200
        self.hang_started = threading.Event()

    def app(self) -> Starlette:
        async def health(request: Request) -> Response:
            return JSONResponse({"status": "healthy" if self.status == 200 else "down"}, status_code=self.status)

        async def echo(request: Request) -> Response:
            # A careless backend that echoes the caller's credentials in its error body.
            return JSONResponse({"detail": f"failed for {request.headers.get('authorization')}"}, status_code=500)

        async def hang(request: Request) -> Response:
            self.hang_started.set()
            # Answer only once the client has gone (bounded, so a leaked request cannot outlive the test).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):
                    while (await request.receive())["type"] != "http.disconnect":
                        pass
            return Response(status_code=204)

        return Starlette(routes=[Route("/health", health), Route("/hang", hang), Route("/echo", echo)])


def _config(tmp_path: Path, target: str, checks: str, extra: str = "") -> Path:
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(textwrap.dedent(f"""\
        service: test-backend
        state_dir: {tmp_path / "state"}
        shutdown_timeout: {SHUTDOWN_TIMEOUT_S}s
        defaults: {{interval: 1s, timeout: 500ms}}
        targets:
          backend: {{base_url: "{target}"}}
        checks:
        """) + textwrap.indent(textwrap.dedent(checks), "  ") + textwrap.dedent(extra))
    return path


def test_endpoints_metrics_and_logs_tell_the_truth(tmp_path: Path) -> None:
    """A healthy then failing target shows on /status, /metrics and in the logs, all lines JSON."""
    target = Switchable()
    with serve_asgi(target.app()) as base:
        config = _config(tmp_path, base, "- {name: health, kind: http, target: backend, path: /health}\n")
        with run_daemon(config, free_port(), tmp_path) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="readiness")
            assert "ok" == daemon.check("health")["outcome"]
            assert 1.0 == daemon.metric('probe_success{check="health",kind="http"}')
            target.status = 500
            daemon.wait_for(lambda: daemon.check("health")["outcome"] == "server_error", what="server_error")
            assert 500.0 == daemon.metric('probe_http_status_code{check="health",kind="http"}')
            assert 1.0 == daemon.metric(
                'pam_monitor_check_last_outcome{check="health",kind="http",outcome="server_error"}')
            assert 1.0 <= (daemon.metric(
                'pam_monitor_status_transitions_total{check="health",kind="http",from="ok",to="server_error"}') or 0)
        logs = daemon.logs()  # json.loads on every line: a non-JSON line fails here
    events = [e["event"] for e in logs]
    assert "daemon.started" in events
    assert "check.transition" in events
    assert "daemon.stopped" == events[-1]
    assert 0 == daemon.proc.returncode


def test_sigterm_with_a_hanging_run_exits_zero_within_shutdown_timeout(tmp_path: Path) -> None:
    """A run stuck on a hanging target is cancelled: the daemon exits 0 within shutdown_timeout plus slack."""
    target = Switchable()
    with serve_asgi(target.app()) as base:
        config = _config(tmp_path, base, "- {name: stuck, kind: http, target: backend, path: /hang, "
                                         "interval: 10s, timeout: 9s}\n")
        with run_daemon(config, free_port(), tmp_path) as daemon:
            assert target.hang_started.wait(15), "the daemon never called the hanging endpoint"
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            code = daemon.proc.wait(timeout=10)
            elapsed = time.monotonic() - started
    assert 0 == code
    assert elapsed < SHUTDOWN_TIMEOUT_S + EXIT_SLACK_S, f"took {elapsed:.2f} s to stop"
    assert any(e["event"] == "daemon.runs_drained" and e["cancelled"] == 1 for e in daemon.logs())


def test_sighup_bad_config_keeps_old_and_good_config_applies(tmp_path: Path) -> None:
    """SIGHUP with a broken file keeps the running checks and sets the reload metric to 0; a fixed file applies."""
    target = Switchable()
    with serve_asgi(target.app()) as base:
        check_a = "- {name: a, kind: http, target: backend, path: /health}\n"
        config = _config(tmp_path, base, check_a)
        with run_daemon(config, free_port(), tmp_path) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="readiness")
            assert 1.0 == daemon.metric("pam_monitor_config_last_reload_successful")

            config.write_text(config.read_text().replace("timeout: 500ms", "timeout: 5s"))  # timeout >= interval
            daemon.signal(signal.SIGHUP)
            daemon.wait_for(lambda: daemon.metric("pam_monitor_config_last_reload_successful") == 0.0,
                            what="reload failure metric")
            assert ["a"] == [c["name"] for c in daemon.status()["checks"]]
            failed = next(e for e in daemon.logs() if e["event"] == "config.reload_failed")
            assert "timeout (5s) must be less than interval (1s)" in failed["problems"][0]

            _config(tmp_path, base, check_a + "- {name: b, kind: http, target: backend, path: /health}\n")
            daemon.signal(signal.SIGHUP)
            daemon.wait_for(lambda: daemon.metric("pam_monitor_config_last_reload_successful") == 1.0,
                            what="reload success metric")
            daemon.wait_for(lambda: daemon.check("b")["outcome"] == "ok", what="new check b to run")
            assert ["a", "b"] == [c["name"] for c in daemon.status()["checks"]]


def test_listen_address_in_use_exits_one_with_a_clear_event(tmp_path: Path) -> None:
    """If the listen port is taken the daemon says so and exits 1 instead of running blind."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = _config(tmp_path, "http://127.0.0.1:9", "- {name: a, kind: http, target: backend}\n")
        done = subprocess.run(command("run", "--config", str(config), "--listen", f"127.0.0.1:{port}"),
                              capture_output=True, timeout=30, cwd=tmp_path)
    assert 1 == done.returncode
    assert b'"event": "daemon.listen_failed"' in done.stdout


def test_no_secret_reaches_status_metrics_or_logs(tmp_path: Path) -> None:
    """A bearer token from ${VAR}, echoed back by the target in a 500 body, appears nowhere the daemon writes."""
    target = Switchable()
    token = "tok-very-secret-0123456789"
    with serve_asgi(target.app()) as base:
        config = _config(tmp_path, base, "- {name: echo, kind: http, target: backend, path: /echo, "
                                         "headers: {Authorization: 'Bearer ${ECHO_TOKEN}'}}\n")
        with run_daemon(config, free_port(), tmp_path, env={"ECHO_TOKEN": token}) as daemon:
            daemon.wait_for(lambda: daemon.check("echo")["outcome"] == "server_error", what="the echo check")
            status, metrics, page = daemon.get("/status").text, daemon.get("/metrics").text, daemon.get("/").text
    assert "**********" in status
    for where in (status, metrics, page, daemon.raw_logs()):
        assert token not in where


def test_equal_parts_of_config_models_are_shared_and_copies_stay_apart(tmp_path: Path) -> None:
    """After _share_equal_parts, two checks given the same keys hold one empty headers dict, one empty depends_on
    list and one target string; each check still reports exactly the fields it was given (its own fields-set,
    which only pydantic writes) and compares equal to a fresh load; a model_copy with an update changes only the
    copy's set."""
    from monitor.core.config import load_config
    from monitor.daemon import _share_equal_parts

    path = tmp_path / "pam-monitor.yaml"
    path.write_text(textwrap.dedent("""\
        targets: {api: {base_url: "http://127.0.0.1:9"}}
        checks:
          - {name: a, kind: http, target: api, path: /health, expect: {status: [200]}}
          - {name: b, kind: http, target: api, path: /health, expect: {status: [200]}}
          - {name: c, kind: http, target: api, path: /health, interval: 30s}
        """))
    config = load_config(path)
    a, b, c = config.checks
    before = [set(check.model_fields_set) for check in (a, b, c)]
    assert a.headers is not b.headers

    _share_equal_parts(config)

    assert a.model_fields_set is not b.model_fields_set
    assert a.headers is b.headers is c.headers
    assert a.depends_on is b.depends_on
    assert a.target is b.target is c.target
    assert before == [set(check.model_fields_set) for check in (a, b, c)]
    assert load_config(path) == config
    copy = a.model_copy(update={"enabled": False})
    assert "enabled" in copy.model_fields_set
    assert "enabled" not in a.model_fields_set
    assert "enabled" not in b.model_fields_set
