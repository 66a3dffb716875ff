"""The monitor's own file-descriptor limit never pages the target: a real daemon under `ulimit -n 64` probing a
slow target with more checks than it has descriptors for skips the runs it cannot start (saturated) and sends
no EndpointDown, where it used to page "connection to 127.0.0.1 failed: Too many open files"."""

from __future__ import annotations

import resource
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.alerting import Recorder
from tests.support.daemon import DaemonProcess, command, write_http_checks_config
from tests.support.servers import free_port, serve_asgi
from tests.support.slow_target import slow_target

pytestmark = pytest.mark.process  # runs the daemon as a process under a file-descriptor limit

CHECKS = 220
RUN_S = 12.0


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def _sum(metrics: str, family: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(family + "{"):
            labels, _, value = line.rpartition(" ")
            key = labels.rsplit('="', 1)[1].rstrip('"}')
            out[key] = out.get(key, 0.0) + float(value)
    return out


def test_out_of_descriptors_the_daemon_skips_runs_and_never_pages_the_target(tmp_path: Path) -> None:
    """220 checks at 2 s against a target that takes 0.5 s, with 64 descriptors: many runs cannot get a socket.
    No run is connection_error or names the descriptors as the target's failure, the webhook receives no alert of
    a check, and the runs that could not start are counted as skipped (saturated). (Which cause opens the spell's
    one log line depends on timing; tests/probes/test_transport.py asserts the EMFILE cause.)"""
    recorder = Recorder()
    port = free_port()
    with slow_target(delay=0.5) as target, serve_asgi(recorder.app()) as hook:
        config = write_http_checks_config(tmp_path, target=target.url, hook=f"{hook}/hook", service="fds",
                                          checks=CHECKS, interval="2s", timeout="1500ms")
        # Enough request slots that descriptors, not slots, run out first.
        config.write_text("http: {max_in_flight: 300}\n" + config.read_text())
        log_path = tmp_path / "daemon.log"
        with log_path.open("wb") as sink:
            proc = subprocess.Popen(command("run", "--config", str(config), "--listen", f"127.0.0.1:{port}"),
                                    stdout=sink, stderr=subprocess.STDOUT, cwd=str(tmp_path),
                                    preexec_fn=_limit_descriptors)
        daemon = DaemonProcess(proc, f"http://127.0.0.1:{port}", log_path)
        try:
            daemon.wait_for(lambda: daemon.get("/healthz").status_code == 200, what="/healthz")
            time.sleep(RUN_S)  # the daemon runs on its own; nothing here to poll for but time passing
            metrics = daemon.get("/metrics", timeout=10).text
            failures = [e for e in daemon.logs() if e.get("event") in ("check.transition", "check.failed")
                        and "open files" in str(e.get("message"))]
        finally:
            daemon.stop()
    results = _sum(metrics, "pam_monitor_check_results_total")
    skipped = _sum(metrics, "pam_monitor_scheduler_skipped_runs_total")
    assert results.get("ok", 0) > 0, results
    assert 0 == results.get("connection_error", 0), results
    assert skipped.get("saturated", 0) > 0, skipped
    assert [] == failures
    assert [] == [a for body in recorder.bodies("/hook") for a in body["alerts"] if "check" in a["labels"]]
