"""Tests for the serving path (monitor/server.py): /metrics streamed, one render shared by scrapes close together,
heavy requests capped with Retry-After while health checks pass, alerts fetched from the daemon's loop, the server
on its own thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from monitor.core.results import Outcome, Result
from monitor.metrics import Metrics
from monitor.server import LoopCall, ServerThread, bind_socket, build_server, create_app
from monitor.state import State
from tests.support.poll import until
from tests.support.servers import free_port, serve_asgi


def _result(outcome: Outcome) -> Result:
    return Result(check="a", kind="http", outcome=outcome, message="x", duration_s=0.01, started_at=1.0,
                  finished_at=2.0, status_code=200)


def _state_and_metrics() -> tuple[State, Metrics]:
    state = State(lambda: 0.0)
    metrics = Metrics(process_metrics=False)
    state.set_checks([("a", "http")], {"a": 1.0})
    metrics.set_checks([("a", "http", [Outcome.OK, Outcome.SERVER_ERROR], (), (), True)])
    return state, metrics


class CountingMetrics(Metrics):
    """Metrics that count how many times a scrape was rendered."""

    renders = 0

    def render_chunks(self) -> Iterator[bytes]:
        """The usual pieces, counted once per render."""
        self.renders += 1
        yield from super().render_chunks()


def test_scrapes_close_together_share_one_render_and_a_lone_scrape_keeps_nothing() -> None:
    """A lone scrape renders its own body and keeps none of it (the next scrape shows a result that came in
    between); scrapes within the TTL of the one before share one render (the very same body, although another
    result came in); with a zero TTL every scrape is rendered afresh."""
    state = State(lambda: 0.0)
    metrics = CountingMetrics(process_metrics=False)
    state.set_checks([("a", "http")], {"a": 1.0})
    metrics.set_checks([("a", "http", [Outcome.OK, Outcome.SERVER_ERROR], (), (), True)])
    cached = create_app(state, metrics, lambda: "svc", metrics_ttl=3600)
    fresh = create_app(state, metrics, lambda: "svc", metrics_ttl=0)
    line = 'pam_monitor_check_results_total{check="a",kind="http",outcome="ok"} %d\n'
    with serve_asgi(cached) as one, serve_asgi(fresh) as two:
        lone = httpx.get(f"{one}/metrics").text
        metrics.observe(_result(Outcome.OK), None)
        shared = httpx.get(f"{one}/metrics").text
        metrics.observe(_result(Outcome.OK), None)
        again = [httpx.get(f"{one}/metrics").text for _ in range(3)]
        assert 2 == metrics.renders
        afresh = [httpx.get(f"{two}/metrics").text for _ in range(2)]
    # An outcome's counter exists from its first run on: the lone scrape came before any.
    assert "pam_monitor_check_results_total{" not in lone
    assert line % 1 in shared
    assert [shared] * 3 == again
    assert 4 == metrics.renders
    assert [True, True] == [line % 2 in text for text in afresh]


class Gate:
    """An alerts source that holds every request until the test opens it (bounded)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    async def __call__(self) -> list[dict[str, Any]]:
        self.entered.set()
        await asyncio.to_thread(self.opened.wait, 10)
        return []


@pytest.fixture
def held_status() -> Iterator[tuple[str, Gate]]:
    """A server whose /status stays in progress until the gate opens, with at most one heavy request at once."""
    state, metrics = _state_and_metrics()
    gate = Gate()
    app = create_app(state, metrics, lambda: "svc", alerts=gate, max_heavy=1)
    with serve_asgi(app) as base:
        yield base, gate
        gate.opened.set()


def test_heavy_requests_over_the_cap_get_503_with_retry_after_and_health_still_answers(
    held_status: tuple[str, Gate]
) -> None:
    """With one /status in progress and a cap of one, /metrics and / are refused at once (503, Retry-After: 1);
    /healthz and /readyz are answered as usual; once the first finishes, /metrics is served again."""
    base, gate = held_status
    holder = threading.Thread(target=lambda: httpx.get(f"{base}/status", timeout=15))
    holder.start()
    assert gate.entered.wait(10)
    refused = [httpx.get(f"{base}{path}", timeout=5) for path in ("/metrics", "/", "/status")]
    assert [(503, "1")] * 3 == [(r.status_code, r.headers.get("retry-after")) for r in refused]
    assert [503, 503] == [httpx.get(f"{base}{p}", timeout=5).status_code for p in ("/healthz", "/readyz")]
    gate.opened.set()
    holder.join(15)
    assert 200 == httpx.get(f"{base}/metrics", timeout=5).status_code


async def test_loop_call_asks_the_daemon_loop_and_reuses_the_answer_within_its_ttl() -> None:
    """From the server thread's loop, the alerts are computed on the daemon's loop (its thread), once per TTL."""
    daemon_loop = asyncio.get_running_loop()
    calls: list[int] = []

    def active() -> list[dict[str, Any]]:
        calls.append(threading.get_ident())
        return [{"alertname": "X"}]

    call = LoopCall(daemon_loop, active, ttl=3600)

    def in_server_thread() -> list[Any]:
        async def twice() -> list[Any]:
            return [await call(), await call()]
        return asyncio.run(twice())

    answers = await asyncio.to_thread(in_server_thread)
    assert [[{"alertname": "X"}]] * 2 == answers
    assert [threading.get_ident()] == calls


async def test_loop_call_returns_the_last_answer_when_the_daemon_loop_is_stuck() -> None:
    """If the daemon's loop cannot answer within the timeout (stuck in a CPU-bound stretch), /status gets the
    previous answer at once instead of hanging with it."""
    daemon_loop = asyncio.get_running_loop()
    count = [0]

    def active() -> list[dict[str, Any]]:
        count[0] += 1
        return [{"n": count[0]}]

    call = LoopCall(daemon_loop, active, ttl=0, timeout=0.2)

    def from_server_thread() -> tuple[list[Any], float]:
        async def ask() -> tuple[list[Any], float]:
            started = time.monotonic()
            answer = await call()
            return answer, time.monotonic() - started
        return asyncio.run(ask())

    first, _ = await asyncio.to_thread(from_server_thread)
    asked = daemon_loop.run_in_executor(None, from_server_thread)
    time.sleep(2.0)  # noqa: ASYNC251 - the daemon's loop is stuck on purpose
    second, waited = await asked
    assert [{"n": 1}] == first
    assert [{"n": 1}] == second
    # The cached answer after the 0.2 s call timeout, not after the loop came back 2 s later (generous for a busy
    # machine).
    assert waited < 1.5


async def test_server_thread_answers_while_the_daemon_loop_is_blocked() -> None:
    """The endpoints run on their own thread and loop: a request made while the daemon's loop is blocked (here by
    the blocking request itself) is answered, and the server stops when asked."""
    state, metrics = _state_and_metrics()
    state.tick()
    port = free_port()
    server = ServerThread(build_server(create_app(state, metrics, lambda: "svc"), "127.0.0.1", port),
                          bind_socket("127.0.0.1", port))
    server.start()
    until(lambda: server.server.started, timeout=10, what="the server thread to start")
    status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code  # noqa: ASYNC210 - on purpose
    await server.stop(5)
    assert 200 == status
    assert False is server.alive


def test_metrics_are_gzipped_when_the_scraper_asks_and_plain_otherwise() -> None:
    """Accept-Encoding: gzip (what Prometheus sends) gets a gzip body that inflates to the plain one, with
    Content-Encoding and Vary; no header or `gzip;q=0` gets the plain text."""
    import gzip

    state, metrics = _state_and_metrics()
    metrics.observe(_result(Outcome.OK), None)
    app = create_app(state, metrics, lambda: "svc", metrics_ttl=0)
    with serve_asgi(app) as base, httpx.Client() as client:
        def raw(encoding: str | None) -> tuple[str | None, str | None, bytes]:
            headers = {"Accept-Encoding": encoding} if encoding is not None else {"Accept-Encoding": "identity"}
            with client.stream("GET", f"{base}/metrics", headers=headers) as answer:
                body = b"".join(answer.iter_raw())
                return answer.headers.get("content-encoding"), answer.headers.get("vary"), body

        plain_encoding, _, plain = raw(None)
        zipped_encoding, vary, zipped = raw("gzip")
        refused_encoding, _, refused = raw("gzip;q=0, identity")
    assert (None, "gzip", "Accept-Encoding", None) == (plain_encoding, zipped_encoding, vary, refused_encoding)
    assert plain == gzip.decompress(zipped) == refused
    assert b'pam_monitor_check_results_total{check="a",kind="http",outcome="ok"} 1' in plain


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip", True), ("deflate, gzip;q=1.0, *;q=0.5", True), ("GZIP", True), ("*", True),
    ("gzip;q=0", False), ("identity", False), ("", False), ("gzip;q=zero", False), ("br, deflate", False),
])
def test_accept_encoding_is_read_like_rfc_9110(header: str, expected: bool) -> None:
    """gzip (or *) with a q above 0 allows it; q=0 or an unreadable q refuses it; other codings do not count."""
    from monitor.server import accepts_gzip

    assert expected == accepts_gzip(header)
