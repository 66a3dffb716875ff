"""Start a real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1 for end-to-end alert tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.poll import until
from tests.support.servers import free_port

BINARY = "/usr/bin/prometheus-alertmanager"
_CONFIG = """\
route:
  receiver: "null"
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


class Alertmanager:
    """One Alertmanager process; `stop()` and `start()` again keep the same port and storage.

    `config` is the alertmanager.yml to run (default: one receiver that sends nothing, 1 s grouping).
    """

    def __init__(self, workdir: Path, port: int | None = None, config: str = _CONFIG) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "alertmanager.yml").write_text(config, encoding="utf-8")

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until /-/ready answers 200."""
        log = (self.workdir / "alertmanager.log").open("ab")
        self._proc = subprocess.Popen(
            [BINARY, f"--config.file={self.workdir / 'alertmanager.yml'}",
             f"--storage.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--cluster.listen-address=", "--log.level=warn"],
            stdout=log, stderr=log,
        )
        log.close()
        proc = self._proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {proc.returncode}; see {self.workdir}")
            return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200

        try:
            until(ready, timeout=timeout, what=f"alertmanager on {self.url} to be ready", ignore=(httpx.HTTPError,))
        except AssertionError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s)."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = None

    def alerts(self) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: the active (not resolved) alerts."""
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5.0)
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()
        return data

    def alerts_named(self, alertname: str) -> list[dict[str, Any]]:
        """Active alerts with this alertname."""
        return [a for a in self.alerts() if a["labels"].get("alertname") == alertname]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    """A running Alertmanager on a free 127.0.0.1 port, stopped after the test."""
    if shutil.which(BINARY) is None:
        pytest.skip(f"{BINARY} is not installed (Debian package prometheus-alertmanager)")
    am = Alertmanager(tmp_path / "alertmanager")
    am.start()
    try:
        yield am
    finally:
        am.stop()
