"""The real daemon under a flood of /metrics and /status scrapers: no healthy check fails, probing goes on, nothing
pages.

The trial: 150 clients, half scraping /metrics and half /status, each as fast as it is answered, for 8 s, against
the daemon (`pam-monitor run`, its alert engine and a webhook sink) probing 200 healthy checks every second with a
150 ms timeout (tight on purpose: a probe delayed by serving would time out). What is asserted is what an operator
would see: outcomes, runs, skipped runs by reason, /status, state changes and pages, never timing.
Bounded: 150 tasks for 8 s, the daemon for at most ~40 s.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support.alerting import Recorder
from tests.support.daemon import run_daemon, write_http_checks_config
from tests.support.servers import free_port, serve_asgi
from tests.support.slow_target import slow_target

pytestmark = pytest.mark.process  # starts the daemon, a stand-in target or another binary as a process

CHECKS = 200
CLIENTS = 150
FLOOD_S = 8.0


def _sum(metrics: str, family: str) -> dict[str, float]:
    """A family's samples summed by the label after the family's first label set (outcome, reason): text -> sum."""
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(family + "{"):
            labels, _, value = line.rpartition(" ")
            key = labels.rsplit('="', 1)[1].rstrip('"}')
            out[key] = out.get(key, 0.0) + float(value)
    return out


def _flood(base: str) -> Counter[str]:
    """CLIENTS tasks on one keep-alive pool, alternately /metrics and /status, no back-off, for FLOOD_S seconds;
    answers counted by path and status (or error type)."""
    counts: Counter[str] = Counter()

    async def one(path: str, client: httpx.AsyncClient, ends: float) -> None:
        while time.monotonic() < ends:
            try:
                counts[f"{path} {(await client.get(base + path)).status_code}"] += 1
            except httpx.HTTPError as exc:
                counts[f"{path} {type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)

    async def main() -> None:
        # Connections idle 0.5 s are not reused: the server drops idle ones after 5 s (uvicorn's keep-alive), and
        # reusing one it is closing is a client race (a ReadError), not an answer. The server counts idleness from
        # when it sent the answer, the client from when it got round to reading it: this test's one thread runs
        # 150 scrapers parsing megabytes, and on a busy machine it read answers seconds late, so the 2 s it used to
        # allow let a connection reach the server's 5 s (the '/status ReadError' seen once).
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS, keepalive_expiry=0.5)
        async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
            ends = time.monotonic() + FLOOD_S
            await asyncio.gather(*(one(("/metrics", "/status")[i % 2], client, ends) for i in range(CLIENTS)))

    asyncio.run(main())
    return counts


def test_a_scrape_flood_neither_fails_a_healthy_check_nor_stalls_probing_nor_pages(tmp_path: Path) -> None:
    """150 concurrent /metrics and /status scrapers for 8 s against 200 healthy checks at 1 s: every run is ok,
    probing goes on through the flood (at least half the scheduled runs), a run is skipped only as `saturated`
    (the monitor's own, honest and counted; on a busy 2-core machine a flood can still cost a few), /status shows
    every check ok and no alert of a check, no check changes state, the webhook gets no page of a check, and the
    scrapers were answered (200, or 503 with Retry-After while the cap on heavy answers is reached), never an
    error."""
    recorder = Recorder()
    with slow_target(delay=0.0) as target, serve_asgi(recorder.app()) as hook:
        config = write_http_checks_config(tmp_path, target=target.url, hook=f"{hook}/hook", service="flood",
                                          checks=CHECKS, interval="1s", timeout="150ms")
        with run_daemon(config, free_port(), tmp_path) as daemon:
            daemon.wait_for(lambda: daemon.get("/readyz").status_code == 200, what="every check to run once")
            before = daemon.get("/metrics").text
            counts: Counter[str] = Counter()
            flood = threading.Thread(target=lambda: counts.update(_flood(daemon.base_url)))
            flood.start()
            flood.join(FLOOD_S + 30)
            assert not flood.is_alive()
            after = daemon.get("/metrics").text
            status = daemon.status()
            events = [(e["event"], e.get("alert")) for e in daemon.logs()
                      if e.get("event") in ("alert.fired", "alert.flapping", "check.transition")]
    results = _sum(after, "pam_monitor_check_results_total")
    runs = sum(results.values()) - sum(_sum(before, "pam_monitor_check_results_total").values())
    skipped = {reason: n - _sum(before, "pam_monitor_scheduler_skipped_runs_total")[reason]
               for reason, n in _sum(after, "pam_monitor_scheduler_skipped_runs_total").items()}
    assert {"ok"} == {outcome for outcome, n in results.items() if n}
    assert runs >= CHECKS * FLOOD_S / 1.0 / 2, runs  # ~1,600 scheduled in the flood's 8 s
    assert {"max_instances": 0, "misfire": 0, "coalesced": 0} == {k: v for k, v in skipped.items() if k != "saturated"}
    assert [("ok", True)] * CHECKS == [(c["outcome"], c["success"]) for c in status["checks"]]
    assert set() == {a["alertname"] for a in status["alerts"]} - {"MonitorWatchdog", "MonitorSaturated"}
    assert set() == {alert for _, alert in events} - {"MonitorSaturated"}
    assert [] == [a for body in recorder.bodies("/hook") for a in body["alerts"] if "check" in a["labels"]]
    assert counts["/metrics 200"] > 0, counts
    assert counts["/status 200"] > 0, counts
    assert {key.split(" ")[1] for key in counts} <= {"200", "503"}, counts
