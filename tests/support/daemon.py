"""Start the real `pam-monitor` daemon as a subprocess and talk to it over 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.poll import until


class DaemonProcess:
    """A running `pam-monitor run`: its process, its base URL and its captured JSON log lines."""

    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.log_path = log_path

    def get(self, path: str, timeout: float = 5.0) -> httpx.Response:
        """GET a daemon endpoint."""
        return httpx.get(self.base_url + path, timeout=timeout)

    def logs(self) -> list[dict[str, Any]]:
        """Every log line so far, parsed; a line that is not JSON fails the test that reads it."""
        text = self.log_path.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def raw_logs(self) -> str:
        """The log file as text."""
        return self.log_path.read_text(errors="replace")

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        """Poll `predicate()` until it returns something truthy; fail with the daemon log tail otherwise.

        A request the daemon cannot answer yet counts as "not yet"; the daemon exiting ends the wait at once.
        """

        def alive_and_true() -> Any:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode} waiting for {what}")
            return predicate()

        try:
            return until(alive_and_true, timeout=timeout, interval=0.1, what=what, ignore=(httpx.HTTPError, OSError))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; log tail:\n{self.raw_logs()[-3000:]}") from None

    def status(self) -> dict[str, Any]:
        """The /status document."""
        doc: dict[str, Any] = self.get("/status").json()
        return doc

    def check(self, name: str) -> dict[str, Any]:
        """One check's entry in /status."""
        return next(c for c in self.status()["checks"] if c["name"] == name)

    def metric(self, sample: str) -> float | None:
        """The value of one exact sample line prefix (name{labels}) in /metrics, or None."""
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal to the daemon."""
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; kill if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


def command(*args: str) -> list[str]:
    """argv running the CLI with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "monitor.cli", *args]


@contextmanager
def run_daemon(config_path: Path, port: int, tmp_path: Path, *extra: str,
               env: dict[str, str] | None = None) -> Iterator[DaemonProcess]:
    """Start `pam-monitor run` on 127.0.0.1:port; wait until /healthz answers; always stop it."""
    log_path = tmp_path / f"daemon-{port}.log"
    with log_path.open("wb") as sink:
        proc = subprocess.Popen(
            command("run", "--config", str(config_path), "--listen", f"127.0.0.1:{port}", *extra),
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            cwd=str(tmp_path),
        )
    daemon = DaemonProcess(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        daemon.wait_for(lambda: daemon.get("/healthz").status_code == 200, what="/healthz")
        yield daemon
    finally:
        daemon.stop()


def write_http_checks_config(tmp_path: Path, *, target: str, hook: str, service: str, checks: int,
                             interval: str, timeout: str) -> Path:
    """A config file of `checks` http checks of `target`/health (named c000, c001, ...) with one webhook sink
    `hook`, state in tmp_path/state, logging warnings only."""
    path = tmp_path / "pam-monitor.yaml"
    lines = "\n".join(f"  - {{name: c{i:03d}, kind: http, target: backend, path: /health}}" for i in range(checks))
    path.write_text(textwrap.dedent(f"""\
        service: {service}
        state_dir: {tmp_path / "state"}
        log_level: warning
        defaults: {{interval: {interval}, timeout: {timeout}}}
        targets:
          backend: {{base_url: "{target}"}}
        alerts:
          sinks: [{{kind: webhook, name: hook, url: "{hook}"}}]
        checks:
        """) + lines + "\n")
    return path
