"""Tests for monitor.server and monitor.state through a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import httpx

from monitor.core.results import Outcome, Result
from monitor.metrics import Metrics
from monitor.server import create_app
from monitor.state import State
from tests.support.servers import serve_asgi


class FakeClock:
    """A monotonic clock the test moves by hand (State reads it for the scheduler heartbeat)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        """The current fake time."""
        return self.now


def _result(check: str, outcome: Outcome, message: str = "fine") -> Result:
    return Result(check=check, kind="http", outcome=outcome, message=message, duration_s=0.125,
                  started_at=1_795_000_000.0, finished_at=1_795_000_000.125, status_code=500)


def test_health_ready_status_and_page() -> None:
    """/healthz follows the scheduler heartbeat, /readyz the first round, /status the DESIGN §7 shape."""
    clock = FakeClock()
    state = State(clock)
    metrics = Metrics(process_metrics=False)
    state.set_checks([("a", "http"), ("b", "http")])
    state.alerts = lambda: [{"alertname": "EndpointDown", "state": "firing", "labels": {"check": "a"},
                             "since": "2026-11-25T00:00:00Z"}]
    app = create_app(state, metrics, lambda: "pam-backend")
    with serve_asgi(app) as base, httpx.Client(base_url=base) as client:
        assert 503 == client.get("/healthz").status_code
        state.tick()
        assert (200, "ok\n") == (client.get("/healthz").status_code, client.get("/healthz").text)
        clock.now += 31
        assert 503 == client.get("/healthz").status_code

        not_ready = client.get("/readyz")
        assert (503, "2 of 2 checks have not run yet\n") == (not_ready.status_code, not_ready.text)
        state.record(_result("a", Outcome.SERVER_ERROR, "expected 200, got 500 after 0.12 s <script>"))
        state.record(_result("b", Outcome.OK))
        assert 200 == client.get("/readyz").status_code

        doc = client.get("/status").json()
        assert {"checks", "alerts"} == set(doc)
        assert {"name": "a", "kind": "http", "outcome": "server_error", "success": False, "status_code": 500,
                "duration_s": 0.125, "message": "expected 200, got 500 after 0.12 s <script>",
                "finished_at": "2026-11-18T11:06:40.125Z"} == doc["checks"][0]
        assert "EndpointDown" == doc["alerts"][0]["alertname"]

        page = client.get("/")
        assert "text/html" in page.headers["content-type"]
        assert "&lt;script&gt;" in page.text
        assert "<script>" not in page.text
        assert "EndpointDown" in page.text

        scrape = client.get("/metrics")
        assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_status_lists_checks_that_have_not_run() -> None:
    """A check without a result yet appears with outcome null and says so."""
    state = State(FakeClock())
    state.set_checks([("a", "db")])
    assert {"name": "a", "kind": "db", "outcome": None, "success": None, "status_code": None, "duration_s": None,
            "message": "not run yet", "finished_at": None} == state.status()["checks"][0]


def test_reload_drops_results_of_removed_checks() -> None:
    """After set_checks without a check, its result is gone and a late result for it is ignored."""
    state = State(FakeClock())
    state.set_checks([("a", "http"), ("b", "http")])
    state.record(_result("a", Outcome.OK))
    state.set_checks([("b", "http")])
    state.record(_result("a", Outcome.OK))
    assert ["b"] == [c["name"] for c in state.status()["checks"]]
    assert "a" not in state.results
