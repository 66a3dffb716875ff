"""The real daemon overloaded on purpose: its own saturation shows as skipped runs and MonitorSaturated, never as a
target's failure; a flood of /metrics scrapers never turns a healthy check into a failure.

Bounded: each test runs its daemon for at most ~25 s; the scrapers are a fixed number of threads for a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import DaemonProcess, command
from tests.support.servers import free_port
from tests.support.slow_target import slow_target

pytestmark = pytest.mark.process  # starts the daemon, a stand-in target or another binary as a process


@contextlib.contextmanager
def niced_daemon(config: Path, tmp_path: Path, nice: int) -> Iterator[DaemonProcess]:
    """`pam-monitor run` at a lower CPU priority than the target (so the target stays honest-fast while the
    daemon is the one starved); always stopped."""
    port = free_port()
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as sink:
        proc = subprocess.Popen(command("run", "--config", str(config), "--listen", f"127.0.0.1:{port}"),
                                stdout=sink, stderr=subprocess.STDOUT, cwd=str(tmp_path), env=dict(os.environ),
                                preexec_fn=lambda: os.nice(nice))
    daemon = DaemonProcess(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        daemon.wait_for(lambda: daemon.get("/healthz").status_code == 200, timeout=30, what="/healthz")
        yield daemon
    finally:
        daemon.stop()


def _config(tmp_path: Path, target: str, *, checks: int, interval: str, timeout: str) -> Path:
    path = tmp_path / "pam-monitor.yaml"
    lines = "\n".join(
        f"  - {{name: c{i:03d}, kind: http, target: backend, path: /health}}" for i in range(checks))
    path.write_text(textwrap.dedent(f"""\
        service: overload
        state_dir: {tmp_path / "state"}
        log_level: warning
        defaults: {{interval: {interval}, timeout: {timeout}}}
        targets:
          backend: {{base_url: "{target}"}}
        checks:
        """) + lines + "\n")
    return path


def _samples(text: str, name: str) -> dict[str, float]:
    """Every sample of one family: the label part -> value."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line[len(name):].rpartition(" ")
            out[labels] = float(value)
    return out


def _outcomes(metrics: str) -> dict[str, float]:
    """Runs by outcome, summed over every check."""
    totals: dict[str, float] = {}
    for labels, value in _samples(metrics, "pam_monitor_check_results_total").items():
        outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
        totals[outcome] = totals.get(outcome, 0.0) + value
    return {k: v for k, v in totals.items() if v}


def test_an_overloaded_daemon_skips_runs_and_says_so_but_never_blames_the_target(tmp_path: Path) -> None:
    """400 checks every 500 ms (800 runs a second: more than 16 request slots can carry to a target answering in
    40 ms, and more than a lower-priority core can run) against a healthy target: runs are skipped with reason
    saturated, MonitorSaturated fires, and every result recorded is `ok`: no target outcome changed, no target
    alert. (The 260 ms between the target's answer and the timeout keep the target honest on a busy machine.)"""
    with slow_target(delay=0.04) as target:
        config = _config(tmp_path, target.url, checks=400, interval="500ms", timeout="300ms")
        with niced_daemon(config, tmp_path, nice=10) as daemon:
            daemon.wait_for(
                lambda: 'alertname="MonitorSaturated",severity="warning"} 1.0' in daemon.get("/metrics").text,
                timeout=25, what="MonitorSaturated firing")
            metrics = daemon.get("/metrics").text
            status = daemon.status()
        served = target.served()
    assert served > 0
    assert {"ok"} == set(_outcomes(metrics)), _outcomes(metrics)
    assert _samples(metrics, "pam_monitor_scheduler_skipped_runs_total")['{reason="saturated"}'] > 0
    assert {"ok", None} >= {c["outcome"] for c in status["checks"]}
    assert [("MonitorSaturated", "firing")] == [
        (a["alertname"], a["state"]) for a in status["alerts"] if a["alertname"] != "MonitorWatchdog"]
    events = [e["event"] for e in daemon.logs()]
    assert 1 <= events.count("scheduler.saturated") <= 3  # once per spell, not once per skipped run


def _scrape(url: str, until_t: float, counts: dict[str, int], lock: threading.Lock) -> None:
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < until_t:
            try:
                code = str(client.get(url).status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            with lock:
                counts[code] = counts.get(code, 0) + 1


def test_a_flood_of_scrapers_never_fails_a_healthy_check(tmp_path: Path) -> None:
    """20 checks at 200 ms against a healthy target while 50 threads scrape /metrics as fast as they can for
    6 s: every run is ok, no target alert; the scrapers were served (200) or told to come back (503)."""
    with slow_target(delay=0.0) as target:
        config = _config(tmp_path, target.url, checks=20, interval="200ms", timeout="150ms")
        with niced_daemon(config, tmp_path, nice=0) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="readiness")
            counts: dict[str, int] = {}
            lock = threading.Lock()
            until_t = time.monotonic() + 6
            scrapers = [threading.Thread(target=_scrape, args=(f"{daemon.base_url}/metrics", until_t, counts, lock))
                        for _ in range(50)]
            for thread in scrapers:
                thread.start()
            for thread in scrapers:
                thread.join(20)
            metrics = daemon.get("/metrics").text
            status = daemon.status()
    assert {"ok"} == set(_outcomes(metrics)), _outcomes(metrics)
    assert _outcomes(metrics)["ok"] >= 20 * 5  # probing went on during the flood
    assert set() == {a["alertname"] for a in status["alerts"]} - {"MonitorSaturated", "MonitorWatchdog"}
    assert counts.get("200", 0) > 0
    assert set(counts) <= {"200", "503"}, counts

