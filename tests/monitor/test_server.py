"""Tests for monitor.server and monitor.state through a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from monitor.core.config import load_config
from monitor.core.results import Outcome, ProbeResult, Result
from monitor.metrics import Metrics
from monitor.page import RUNBOOK
from monitor.server import create_app
from monitor.state import State
from tests.support.clock import FakeClock
from tests.support.servers import serve_asgi


def _result(check: str, outcome: Outcome, message: str = "fine") -> Result:
    return Result(check=check, kind="http", outcome=outcome, message=message, duration_s=0.125,
                  started_at=1_795_000_000.0, finished_at=1_795_000_000.125, status_code=500)


def test_health_ready_status_and_page() -> None:
    """/healthz follows the scheduler heartbeat, /readyz the first round, /status the documented shape."""
    clock = FakeClock()
    state = State(clock.monotonic)
    metrics = Metrics(process_metrics=False)
    state.set_checks([("a", "http"), ("b", "http")], {"a": 30.0, "b": 300.0})
    state.alerts = lambda: [{"alertname": "EndpointDown", "state": "firing", "labels": {"check": "a"},
                             "since": "2026-11-25T00:00:00Z"}]
    app = create_app(state, metrics, lambda: "pam-backend", clock=lambda: 1_795_000_060.0)
    with serve_asgi(app) as base, httpx.Client(base_url=base) as client:
        assert 503 == client.get("/healthz").status_code
        state.tick()
        assert (200, "ok\n") == (client.get("/healthz").status_code, client.get("/healthz").text)
        clock.advance(31)
        assert 503 == client.get("/healthz").status_code

        not_ready = client.get("/readyz")
        assert (503, "2 of 2 checks have not run yet\n") == (not_ready.status_code, not_ready.text)
        state.record(_result("a", Outcome.SERVER_ERROR, "expected 200, got 500 after 0.12 s <script>"))
        state.record(_result("b", Outcome.OK))
        assert 200 == client.get("/readyz").status_code

        doc = client.get("/status").json()
        assert {"checks", "alerts", "dead_mans_switch", "summary"} == set(doc)
        assert {"name": "a", "kind": "http", "outcome": "server_error", "success": False, "status_code": 500,
                "duration_s": 0.125, "message": "expected 200, got 500 after 0.12 s <script>",
                "finished_at": "2026-11-18T11:06:40.125Z", "interval_s": 30.0,
                "history": [{"outcome": "server_error", "finished_at": "2026-11-18T11:06:40.125Z"}],
                "hint": RUNBOOK["server_error"]} == doc["checks"][0]
        assert ({"state": "not sent"}, {"checks": 2, "failing": 1, "slow": 0, "not_run_yet": 0, "alerts_firing": 1,
                                        "alerts_pending": 0}) == (doc["dead_mans_switch"], doc["summary"])
        assert "EndpointDown" == doc["alerts"][0]["alertname"]

        page = client.get("/")
        assert "text/html" in page.headers["content-type"]
        assert "&lt;script&gt;" in page.text
        # The only script element is the page's own relative-time script, after the content.
        assert 1 == page.text.count("<script")
        assert page.text.index("</main>") < page.text.index("<script>")
        assert "EndpointDown" in page.text
        assert "<title>(1) failing - pam-monitor: pam-backend</title>" in page.text
        assert "1 min ago" in page.text

        scrape = client.get("/metrics")
        assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_status_lists_checks_that_have_not_run() -> None:
    """A check without a result yet appears with outcome null and says so."""
    state = State(FakeClock().monotonic)
    state.set_checks([("a", "db")])
    assert {"name": "a", "kind": "db", "outcome": None, "success": None, "status_code": None, "duration_s": None,
            "message": "not run yet", "finished_at": None, "interval_s": None,
            "history": []} == state.status()["checks"][0]


def test_reload_drops_results_of_removed_checks() -> None:
    """After set_checks without a check, its result is gone and a late result for it is ignored."""
    state = State(FakeClock().monotonic)
    state.set_checks([("a", "http"), ("b", "http")])
    state.record(_result("a", Outcome.OK))
    state.set_checks([("b", "http")])
    state.record(_result("a", Outcome.OK))
    assert ["b"] == [c["name"] for c in state.status()["checks"]]
    assert "a" not in state.results


def _at(check: str, outcome: Outcome, finished_at: float, kind: str = "http") -> Result:
    return Result(check=check, kind=kind, outcome=outcome, message="m", duration_s=0.01,
                  started_at=finished_at - 0.01, finished_at=finished_at)


def test_history_is_bounded_and_oldest_first() -> None:
    """/status keeps the last HISTORY_LENGTH outcomes per check, oldest first; older ones are dropped."""
    from monitor.state import HISTORY_LENGTH

    state = State(FakeClock().monotonic)
    state.set_checks([("a", "http")], {"a": 2.0})
    for i in range(HISTORY_LENGTH + 30):
        state.record(_at("a", Outcome.OK if i % 2 else Outcome.TIMEOUT, 1_795_000_000.0 + i))
    entry = state.status()["checks"][0]
    assert 2.0 == entry["interval_s"]
    assert HISTORY_LENGTH == len(entry["history"]) == len(state.history["a"])
    assert {"outcome": "timeout", "finished_at": "2026-11-18T11:07:10.000Z"} == entry["history"][0]
    assert {"outcome": "ok", "finished_at": "2026-11-18T11:07:29.000Z"} == entry["history"][-1]


def test_reload_keeps_history_of_unchanged_checks_only() -> None:
    """A reload keeps a check's history when its kind stays, starts afresh when it changes, forgets removed ones."""
    state = State(FakeClock().monotonic)
    state.set_checks([("keep", "http"), ("change", "http"), ("gone", "http")])
    for name in ("keep", "change", "gone"):
        state.record(_at(name, Outcome.OK, 1_795_000_000.0))
    state.set_checks([("keep", "http"), ("change", "db")], {"keep": 10.0, "change": 60.0})
    doc = {c["name"]: c for c in state.status()["checks"]}
    assert (1, 10.0) == (len(doc["keep"]["history"]), doc["keep"]["interval_s"])
    assert ([], 60.0) == (doc["change"]["history"], doc["change"]["interval_s"])
    assert {"keep", "change"} == set(state.history)


def test_readyz_says_when_alert_state_is_not_being_saved() -> None:
    """With every check run, /readyz is 503 with the persistence problem while there is one, and 200 after."""
    state = State(FakeClock().monotonic)
    state.set_checks([("a", "http")], {"a": 30.0})
    state.record(_result("a", Outcome.OK))
    problem: list[str | None] = ["alert state is not being saved since 2026-01-01T00:00:00.000Z: disk is full"]
    state.persistence = lambda: problem[0]
    app = create_app(state, Metrics(process_metrics=False), lambda: "pam-backend")
    with serve_asgi(app) as base, httpx.Client(base_url=base) as client:
        answer = client.get("/readyz")
        assert (503, f"{problem[0]}\n") == (answer.status_code, answer.text)
        problem[0] = None
        assert (200, "ok\n") == (client.get("/readyz").status_code, client.get("/readyz").text)


def test_status_says_the_dead_mans_switch_and_what_each_failing_check_asks(tmp_path: Path) -> None:
    """/status: MonitorWatchdog is `dead_mans_switch: being sent` and left out of the summary's counts (still
    listed in `alerts`, as /metrics counts it); a failing journey says its step with method and path, an http
    check its method and path, and both carry their outcome's runbook hint; a secret in a query string never
    shows; the page lists no MonitorWatchdog row."""
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(yaml.safe_dump({
        "targets": {"b": {"base_url": "http://127.0.0.1:9"}},
        "identities": {"u": {"mint": {"secret": "${SECRET}", "sub": "u1"}}},
        "checks": [
            {"name": "health", "kind": "http", "target": "b", "method": "HEAD", "path": "/health?key=${KEY}"},
            {"name": "journey", "kind": "journey", "target": "b", "identity": "u",
             "steps": [{"name": "csrf", "path": "/csrf"}, {"name": "read", "method": "GET", "path": "/me/{sub}"}]},
        ],
    }))
    config = load_config(path, environ={"SECRET": "s" * 40, "KEY": "k3y-s3cr3t"})
    state = State(FakeClock().monotonic)
    state.set_checks([("health", "http"), ("journey", "journey")], {"health": 30.0, "journey": 30.0})
    alerts: list[dict[str, Any]] = [
        {"alertname": "MonitorWatchdog", "state": "firing", "labels": {}, "since": "2026-11-25T00:00:00Z"},
        {"alertname": "TableMissing", "state": "firing", "labels": {"check": "journey"}, "since": None},
        {"alertname": "CheckFailed", "state": "pending", "labels": {"check": "health"}, "since": None},
    ]
    state.alerts = lambda: alerts
    state.record(_result("health", Outcome.TIMEOUT))
    state.record(Result(check="journey", kind="journey", observed=ProbeResult(
        Outcome.TABLE_MISSING, "step read: relation user_settings does not exist", details={"step": "read"}),
        duration_s=0.1, started_at=1_795_000_000.0, finished_at=1_795_000_000.1, confirmation=False))
    app = create_app(state, Metrics(process_metrics=False), lambda: "svc", config=lambda: config)
    with serve_asgi(app) as base, httpx.Client(base_url=base) as client:
        doc = client.get("/status").json()
        page = client.get("/").text
    checks = {c["name"]: c for c in doc["checks"]}
    assert ("HEAD /health", "step read: GET /me/{sub}") == (
        checks["health"]["request"], checks["journey"]["request"])
    assert (RUNBOOK["timeout"], RUNBOOK["table_missing"]) == (checks["health"]["hint"], checks["journey"]["hint"])
    assert (["MonitorWatchdog", "TableMissing", "CheckFailed"], "being sent") == (
        [a["alertname"] for a in doc["alerts"]], doc["dead_mans_switch"]["state"])
    assert (2, 1, 1) == (doc["summary"]["failing"], doc["summary"]["alerts_firing"], doc["summary"]["alerts_pending"])
    assert "k3y-s3cr3t" not in page + repr(doc)
    assert "<div class=where>step read: GET /me/{sub}</div>" in page
    assert "MonitorWatchdog</b>" not in page
