"""Tests for the soak (bench/soak.py, its verdict in bench/soak_report.py) and the blips of bench/target.py: the
verdict on pages and drift, and a blip that fails paths for a while and then recovers by itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench.soak_report import Blip, Page, judge_pages, slope_per_hour
from tests.support.poll import until
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def _page(at: float, check: str | None, status: str = "firing", alertname: str = "EndpointDown",
          event: str | None = None) -> Page:
    return Page(at, event or status, status, alertname, check, f"fp-{alertname}-{check}")


def test_pages_are_judged_against_the_blips() -> None:
    """A firing and a resolve for a blipped check count as expected; a firing for a check never blipped, or for a
    blipped one before its blip began, is false; a second firing of one alert is a duplicate; a firing without a
    resolve is unresolved; a blipped check long enough without a page is missed (a short one is not);
    MonitorSaturated is the monitor's page, not a false one; not-ok runs of checks never blipped are invented."""
    blips = [Blip(["a", "b"], 100.0, 130.0), Blip(["c"], 200.0, 201.0), Blip(["d"], 300.0, 330.0)]
    pages = [
        _page(105.0, "a"), _page(125.0, "a", "resolved"),
        _page(106.0, "b"), _page(107.0, "b"),  # the same alert twice: a duplicate, and never resolved
        _page(50.0, "d"),  # before its blip: false
        _page(150.0, "x"),  # never blipped: false
        _page(160.0, None, alertname="MonitorSaturated"),
    ]
    verdict = judge_pages(pages, blips, long_enough=7.0, not_ok_by_check={"a": 3.0, "x": 2.0, "y": 0.0})
    assert ["EndpointDown on d", "EndpointDown on x"] == verdict.false_pages
    assert ["fp-EndpointDown-b"] == verdict.duplicates
    assert ["fp-EndpointDown-b"] == verdict.unresolved
    assert ["d"] == verdict.missed  # c's blip (1 s) was too short to page
    assert ["MonitorSaturated"] == verdict.monitor_pages
    assert {"x": 2.0} == verdict.invented
    assert [5.0, 6.0] == verdict.time_to_page_s
    assert (3, 4, 5, 1) == (verdict.blips, verdict.checks_blipped, verdict.firing, verdict.resolved)


def test_drift_is_the_least_squares_slope_per_hour() -> None:
    """1 MB every 10 minutes is 6 MB an hour, whatever the noise around the line; fewer than 3 points: none."""
    points = [(t * 600.0, 70.0 + t + (0.1 if t % 2 else -0.1)) for t in range(7)]
    slope = slope_per_hour(points)
    assert slope is not None
    assert abs(slope - 6.0) < 0.2
    assert slope_per_hour(points[:2]) is None


@pytest.mark.process
def test_a_blip_fails_its_paths_for_a_while_then_they_recover() -> None:
    """bench.target (builtin): /health/<name> answers 200; after a 1 s blip of two paths those answer 503 and
    the others 200; after the blip every path answers 200 again; a request saying Connection: close is answered,
    then the connection closed by the target."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.target", "--kind", "builtin", "--port", str(port)],
                            cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: httpx.get(f"{base}/health/a").status_code == 200, timeout=15, what="the target",
              ignore=(httpx.HTTPError,))

        def codes() -> list[int]:
            return [httpx.get(f"{base}/health/{name}").status_code for name in ("a", "b", "c")]

        assert 200 == httpx.get(f"{base}/__blip", params={"paths": "/health/a,/health/b", "seconds": "1"}).status_code
        assert [503, 503, 200] == codes()
        until(lambda: codes() == [200, 200, 200], timeout=10, what="the blip to end")
        closed = httpx.get(f"{base}/health/c", headers={"Connection": "close"})
        assert (200, "close") == (closed.status_code, closed.headers["connection"])
    finally:
        proc.kill()
        proc.wait(5)
