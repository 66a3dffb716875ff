"""The real daemon while the wall clock steps an hour back and an hour forward (an NTP step; monotonic time goes on):
probing goes on, no run is skipped, /healthz stays 200, no healthy check fails and nothing pages.

The step is real for the daemon: it runs under libfaketime (Debian package `faketime`), whose offset file the test
rewrites (read again at most once a second), with monotonic time left alone (`DONT_FAKE_MONOTONIC`). Without
libfaketime it fails saying how to install it; the scheduler's clock is also tested in-process with an injected
wall clock (tests/monitor/test_schedule.py).
Bounded: three phases of at most 20 s each.
"""

from __future__ import annotations

import datetime as dt
import glob
import time
from pathlib import Path

import pytest

from tests.support.alerting import Recorder
from tests.support.daemon import DaemonProcess, run_daemon, write_http_checks_config
from tests.support.servers import free_port, serve_asgi
from tests.support.slow_target import slow_target

pytestmark = pytest.mark.process  # starts the daemon, a stand-in target or another binary as a process

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)
CHECKS = 10
HOUR = 3600.0



@pytest.fixture(autouse=True)
def _libfaketime_installed() -> None:
    """Without libfaketime this test cannot step the daemon's clock: say so loudly rather than skip."""
    if LIBFAKETIME is None:
        pytest.fail("libfaketime is not installed: apt-get install faketime (scripts/test installs it)")


def _family(metrics: str, family: str) -> dict[str, float]:
    """One family's samples: label text -> value."""
    out = {}
    for line in metrics.splitlines():
        if line.startswith(family + "{"):
            labels, _, value = line.rpartition(" ")
            out[labels[len(family):]] = float(value)
    return out


def _runs(daemon: DaemonProcess) -> float:
    return sum(_family(daemon.get("/metrics").text, "pam_monitor_check_results_total").values())


def _newest_finish(daemon: DaemonProcess) -> float:
    """The wall-clock time (as the daemon reads it) of the newest result in /status."""
    return max(dt.datetime.fromisoformat(c["finished_at"].replace("Z", "+00:00")).timestamp()
               for c in daemon.status()["checks"] if c["finished_at"])


def test_wall_clock_steps_neither_stop_probing_nor_invent_skipped_runs(tmp_path: Path) -> None:
    """The daemon's wall clock is stepped an hour back, then forward to real time, then an hour ahead. In each
    phase the step shows in /status (results are stamped with the stepped clock, so the step really happened),
    every check runs at least three more times and /healthz answers 200; over the whole trial fewer runs are
    skipped than run (none on a quiet machine; a starved process honestly skips some, but a clock read on the
    wrong side of the step would skip thousands), every run is ok, no check changes state, /status lists no alert
    of a check and the webhook gets no page of a check. (With APScheduler reading the wall clock, the step back
    stops every job for an hour and the step forward skips ~7,200 runs per check as coalesced.)"""
    assert LIBFAKETIME is not None
    offset_file = tmp_path / "faketime"
    offset_file.write_text("+0\n")
    env = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(offset_file), "FAKETIME_CACHE_DURATION": "1",
           "DONT_FAKE_MONOTONIC": "1"}
    recorder = Recorder()
    with slow_target(delay=0.0) as target, serve_asgi(recorder.app()) as hook:
        config = write_http_checks_config(tmp_path, target=target.url, hook=f"{hook}/hook", service="clocks",
                                          checks=CHECKS, interval="500ms", timeout="300ms")
        with run_daemon(config, free_port(), tmp_path, env=env) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="every check to run once")
            skipped_before = _family(daemon.get("/metrics").text, "pam_monitor_scheduler_skipped_runs_total")
            runs_before = _runs(daemon)
            health = []
            for offset in (-HOUR, 0.0, HOUR):
                offset_file.write_text(f"{offset:+.0f}\n")
                daemon.wait_for(lambda: abs(_newest_finish(daemon) - (time.time() + offset)) < 60,  # noqa: B023
                                what=f"results stamped with the clock stepped to {offset:+.0f} s")
                runs = _runs(daemon)
                daemon.wait_for(lambda: _runs(daemon) - runs >= 3 * CHECKS,  # noqa: B023
                                what=f"three more runs of every check at {offset:+.0f} s")
                health.append(daemon.get("/healthz").status_code)
            metrics = daemon.get("/metrics").text
            status = daemon.status()
            events = [e for e in daemon.logs() if e.get("event") in ("check.transition", "alert.fired")]
    assert [200, 200, 200] == health
    skipped = sum(_family(metrics, "pam_monitor_scheduler_skipped_runs_total").values()) - sum(
        skipped_before.values())
    runs = _family(metrics, "pam_monitor_check_results_total")
    # Phantom skips are counted by the thousand (an hour of 500 ms intervals is 7,200 per check); a starved
    # process on a busy machine honestly skips a few (saturated, or coalesced after a stall), far fewer than it runs.
    assert skipped < sum(runs.values()) - runs_before, (skipped, sum(runs.values()) - runs_before)
    assert {"ok"} == {labels.rsplit('outcome="', 1)[1].rstrip('"}') for labels, n in runs.items() if n}
    assert [] == [(e["event"], e.get("alert")) for e in events if e.get("alert") != "MonitorSaturated"]
    assert set() == {a["alertname"] for a in status["alerts"]} - {"MonitorWatchdog", "MonitorSaturated"}
    assert [] == [a for body in recorder.bodies("/hook") for a in body["alerts"] if "check" in a["labels"]]
