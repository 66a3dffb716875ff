"""SIGHUP reloads against the real daemon: in a child process with a time and memory budget, so a hostile or huge
file neither grows the daemon nor blocks SIGTERM; storms coalesce; a failed reload keeps the old config and logs
one line. Plus the child loader on its own (monitor/reload.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.core.errors import ConfigError
from monitor.reload import load_in_child
from tests.support.daemon import DaemonProcess, command, run_daemon
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.process  # starts the daemon, a stand-in target or another binary as a process

SHUTDOWN_TIMEOUT_S = 2.0
EXIT_SLACK_S = 1.5  # interpreter teardown after the drain: generous, since other suites share the machine
HEAD = """\
service: reload-test
state_dir: {state}
shutdown_timeout: 2s
defaults: {{interval: 500ms, timeout: 400ms}}
targets:
  backend: {{base_url: "{base}"}}
checks:
  - {{name: health, kind: http, target: backend, path: /health}}
"""


def _healthy() -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    return Starlette(routes=[Route("/health", health)])


def _write(tmp_path: Path, base: str, extra_checks: int = 0, tail: str = "") -> Path:
    path = tmp_path / "pam-monitor.yaml"
    body = HEAD.format(state=tmp_path / "state", base=base)
    body += "".join(f"  - {{name: c{i}, kind: http, target: backend, path: /health, interval: 1h, timeout: 1s}}\n"
                    for i in range(extra_checks))
    path.write_text(body + textwrap.dedent(tail))
    return path


def _events(daemon: DaemonProcess, prefix: str) -> list[str]:
    return [e["event"] for e in daemon.logs() if str(e.get("event", "")).startswith(prefix)]


def _children(pid: int) -> list[int]:
    """The pids of a process's children (from /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _hwm_kib(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in KiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1])


def test_a_failed_reload_keeps_the_config_and_logs_one_line(tmp_path: Path) -> None:
    """SIGHUP with a duplicate key: the running check goes on, the reload metric drops to 0, and the log has
    exactly one config.reload* line, naming the key."""
    with serve_asgi(_healthy()) as base:
        config = _write(tmp_path, base)
        with run_daemon(config, free_port(), tmp_path) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="readiness")
            config.write_text(config.read_text() + "service: again\n")
            daemon.signal(signal.SIGHUP)
            daemon.wait_for(lambda: daemon.metric("pam_monitor_config_last_reload_successful") == 0.0,
                            what="the reload failure metric")
            assert ["config.reload_failed"] == _events(daemon, "config.reload")
            failed = next(e for e in daemon.logs() if e["event"] == "config.reload_failed")
            assert ["duplicate key 'service'"] == [p.split(": ", 1)[1][:23] for p in failed["problems"]]
            assert "ok" == daemon.check("health")["outcome"]


def test_billion_laughs_on_sighup_neither_grows_the_daemon_nor_stalls_it(tmp_path: Path) -> None:
    """A "billion laughs" file on SIGHUP: one failed-reload line, the daemon's peak RSS grows by less than 10 MB
    (it grew 100 MB/s), and a later SIGHUP with a good file still applies."""
    laughs = ['lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    laughs += [f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    with serve_asgi(_healthy()) as base:
        config = _write(tmp_path, base)
        good = config.read_text()
        with run_daemon(config, free_port(), tmp_path) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="readiness")
            before = _hwm_kib(daemon.proc.pid)
            config.write_text("\n".join(laughs) + "\nservice: *a9\n")
            daemon.signal(signal.SIGHUP)
            daemon.wait_for(lambda: _events(daemon, "config.reload_failed"), what="the failed reload")
            assert _hwm_kib(daemon.proc.pid) - before < 10 * 1024
            config.write_text(good.replace("service: reload-test", "service: reloaded"))
            daemon.signal(signal.SIGHUP)
            daemon.wait_for(lambda: _events(daemon, "config.reloaded"), what="the good reload")
            assert "ok" == daemon.check("health")["outcome"]


def test_a_sighup_storm_coalesces(tmp_path: Path) -> None:
    """Forty SIGHUPs in a burst: at most two loads run (one, then one more for the signals that came during
    it), each logged once, and the healthy check stays ok throughout."""
    with serve_asgi(_healthy()) as base:
        config = _write(tmp_path, base)
        with run_daemon(config, free_port(), tmp_path) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="readiness")
            for _ in range(40):
                daemon.signal(signal.SIGHUP)
            daemon.wait_for(lambda: _events(daemon, "config.reloaded") and not _children(daemon.proc.pid),
                            what="the reloads to finish")
            reloads = _events(daemon, "config.reload")
            assert 1 <= len(reloads) <= 2, reloads
            assert {"config.reloaded"} == set(reloads)
            # A failure or a change of outcome of the healthy check would be logged as one of these.
            assert [] == _events(daemon, "check.failed") + _events(daemon, "check.transition")
            assert "ok" == daemon.check("health")["outcome"]


def test_sigterm_during_a_slow_reload_exits_within_shutdown_timeout(tmp_path: Path) -> None:
    """SIGTERM while a big file (40,000 checks, seconds to load) is being reloaded: the reload's child is
    killed and the daemon exits within shutdown_timeout (it took 37 s against 5 s), leaving no child behind."""
    with serve_asgi(_healthy()) as base:
        config = _write(tmp_path, base)
        with run_daemon(config, free_port(), tmp_path) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="readiness")
            _write(tmp_path, base, extra_checks=40_000)
            daemon.signal(signal.SIGHUP)
            child = daemon.wait_for(lambda: _children(daemon.proc.pid), what="the reload's child process")[0]
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            daemon.proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 10)
            took = time.monotonic() - started
            assert 0 == daemon.proc.returncode
            assert took < SHUTDOWN_TIMEOUT_S + EXIT_SLACK_S, f"{took:.2f} s"
            assert ["config.reload_abandoned"] == _events(daemon, "config.reload")
            assert not Path(f"/proc/{child}/cmdline").exists() or not Path(f"/proc/{child}/cmdline").read_bytes()


async def test_the_child_loader_keeps_to_its_budgets(tmp_path: Path) -> None:
    """load_in_child gives the same Config as an in-process load, and one clear line when the file needs more
    time or memory than allowed."""
    path = _write(tmp_path, "http://127.0.0.1:1", extra_checks=3000)
    config = await load_in_child(path, listen=None, shard=None)
    assert ["health", "c0"] == [c.name for c in config.checks[:2]]
    with pytest.raises(ConfigError, match=r"took longer than 0.05 s and was abandoned"):
        await load_in_child(path, listen=None, shard=None, timeout=0.05)
    # 20,000 checks need a few hundred MB to load; 64 MiB barely holds the interpreter and its imports.
    big = _write(tmp_path, "http://127.0.0.1:1", extra_checks=20_000)
    with pytest.raises(ConfigError, match=r"memory budget"):
        await load_in_child(big, listen=None, shard=None, memory=64 << 20)


def test_a_failed_reload_never_quotes_a_secret_file(tmp_path: Path) -> None:
    """A reload whose new file puts a fake /etc/shadow (read through ${file:}) where a duration, a URL and a
    name belong: config.reload_failed lists those problems, and no piece of the file appears in the log."""
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$6$Rld0adSALT$HashyReloadHash0123456789abcdefXYZ:19000:0:99999:7:::\n")
    with serve_asgi(_healthy()) as base:
        config = _write(tmp_path, base)
        with run_daemon(config, free_port(), tmp_path) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="readiness")
            ref = f"${{file:{shadow}}}"
            config.write_text(config.read_text().replace("interval: 500ms", f'interval: "{ref}"')
                              .replace(f'base_url: "{base}"', f'base_url: "{ref}"')
                              .replace("name: health", f'name: "{ref}"'))
            daemon.signal(signal.SIGHUP)
            daemon.wait_for(lambda: _events(daemon, "config.reload_failed"), what="the failed reload")
            failed = next(e for e in daemon.logs() if e["event"] == "config.reload_failed")
            assert len(failed["problems"]) >= 3, failed["problems"]
            pieces = [p for p in [*shadow.read_text().strip().split(":"), "Rld0adSALT"] if len(p) >= 6]
            logs = daemon.raw_logs()
            assert [] == [p for p in pieces if p in logs or p.lower() in logs.lower()]


ADDRESS_LIMIT_KIB = 800_000
"""`ulimit -v 800000`: an address-space limit below the reload's 1 GiB budget, as a container or systemd unit may
set (LimitAS=)."""


def _limited(argv: list[str]) -> list[str]:
    """`argv` run by a shell under `ulimit -v ADDRESS_LIMIT_KIB` (soft and hard), exactly as an operator's would."""
    return ["sh", "-c", f'ulimit -v {ADDRESS_LIMIT_KIB} && exec "$@"', "sh", *argv]


def test_the_child_loader_works_under_a_smaller_address_space_limit(tmp_path: Path) -> None:
    """In a process under `ulimit -v 800000`, load_in_child loads a good file (its budget shrinks to the limit
    it inherited) instead of failing every time with "not allowed to raise maximum limit" blamed on the file's
    size and aliases."""
    path = _write(tmp_path, "http://127.0.0.1:1")
    script = ("import asyncio, sys; from pathlib import Path; from monitor.reload import load_in_child; "
              "c = asyncio.run(load_in_child(Path(sys.argv[1]), listen=None, shard=None)); print(c.service)")
    done = subprocess.run(_limited([sys.executable, "-c", script, str(path)]), capture_output=True, timeout=60,
                          check=False)
    assert 0 == done.returncode, done.stderr.decode()[-2000:]
    assert "reload-test" == done.stdout.decode().strip()


def test_sighup_reloads_a_daemon_under_a_smaller_address_space_limit(tmp_path: Path) -> None:
    """The daemon itself runs under `ulimit -v 800000`: SIGHUP with a changed file is applied (config.reloaded,
    the reload metric 1, the new check runs). Before, every reload failed."""
    with serve_asgi(_healthy()) as base:
        config = _write(tmp_path, base)
        port = free_port()
        log_path = tmp_path / "limited.log"
        with log_path.open("wb") as sink:
            proc = subprocess.Popen(_limited(command("run", "--config", str(config), "--listen", f"127.0.0.1:{port}")),
                                    stdout=sink, stderr=subprocess.STDOUT, cwd=str(tmp_path))
        daemon = DaemonProcess(proc, f"http://127.0.0.1:{port}", log_path)
        try:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="readiness")
            _write(tmp_path, base, extra_checks=1)
            daemon.signal(signal.SIGHUP)
            daemon.wait_for(lambda: _events(daemon, "config.reload"), what="the reload")
            assert ["config.reloaded"] == _events(daemon, "config.reload"), daemon.raw_logs()[-2000:]
            assert 1.0 == daemon.metric("pam_monitor_config_last_reload_successful")
            assert ["health", "c0"] == [c["name"] for c in daemon.status()["checks"]]
        finally:
            daemon.stop()
