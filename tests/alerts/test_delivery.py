"""Delivery to real local HTTP sinks: retry with backoff, 4xx not retried, stable dedup keys, no secret leaks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerts import AlertEngine
from monitor.core.clock import SystemClock
from monitor.core.config import Config
from tests.alerts.factory import make_config, result
from tests.support.servers import serve_asgi

CHECK = "settings_get_unauth"
SLACK_TOKEN = "T0FAKE/B0FAKE/slacksecrettoken123"
HEADER_SECRET = "Bearer headersecret456"
ROUTING_KEY = "routingkeysecret789routingkeysec"


@dataclass
class Recorder:
    """A sink stand-in: records every request and answers from a script (then 200/202)."""

    script: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            self.requests.append({"path": request.url.path, "headers": dict(request.headers), "json": body})
            status = self.script.pop(0) if self.script else (202 if "enqueue" in request.url.path else 200)
        return JSONResponse({"status": "x"}, status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests]


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    rec = Recorder()
    with serve_asgi(rec.app()) as url:
        yield rec, url


def sinks(url: str) -> list[dict[str, Any]]:
    return [
        {"kind": "slack", "url": f"{url}/slack/services/{SLACK_TOKEN}", "max_attempts": 5},
        {"kind": "webhook", "url": f"{url}/hook", "headers": {"Authorization": HEADER_SECRET}, "max_attempts": 5},
        {"kind": "pagerduty", "routing_key": ROUTING_KEY, "url": f"{url}/v2/enqueue", "max_attempts": 5},
    ]


def engine(config: Config, registry: prometheus_client.CollectorRegistry) -> AlertEngine:
    return AlertEngine(config, registry=registry, clock=SystemClock(), backoff_base=0.02, backoff_cap=0.2)


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def fire(e: AlertEngine) -> None:
    for r in (result(CHECK, "ok", status=403), result(CHECK, "server_error", status=500),
              result(CHECK, "server_error", status=500, confirmation=True)):
        e.observe(r)


def heal(e: AlertEngine) -> None:
    for _ in range(2):
        e.observe(result(CHECK, "ok", status=403))


def sample(registry: prometheus_client.CollectorRegistry, sink: str, outcome: str) -> float:
    return registry.get_sample_value("pam_monitor_notifications_total", {"sink": sink, "result": outcome}) or 0.0


async def test_retries_5xx_and_429_then_succeeds(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A webhook answering 500, then 429, then 200 gets the same notification three times; counted 2 retried, 1 sent."""
    rec, url = recorder
    rec.script = [500, 429]
    registry = prometheus_client.CollectorRegistry()
    e = engine(make_config(tmp_path, sinks=[sinks(url)[1]]), registry)
    await e.start()
    try:
        fire(e)
        await until(lambda: sample(registry, "webhook", "sent") == 1.0)
        assert ["/hook", "/hook", "/hook"] == rec.paths()
        assert 2.0 == sample(registry, "webhook", "retried")
        bodies = [r["json"] for r in rec.requests]
        assert bodies[0] == bodies[2]
        assert ("firing", "ContractRegression") == (bodies[2]["status"], bodies[2]["alerts"][0]["labels"]["alertname"])
        assert HEADER_SECRET == rec.requests[0]["headers"]["authorization"]
    finally:
        await e.aclose(1.0)


async def test_4xx_is_a_config_error_not_retried(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Slack answering 400: one request, counted rejected, the outbox empties (nothing left to retry)."""
    rec, url = recorder
    rec.script = [400]
    registry = prometheus_client.CollectorRegistry()
    e = engine(make_config(tmp_path, sinks=[sinks(url)[0]]), registry)
    await e.start()
    try:
        with structlog.testing.capture_logs() as logs:
            fire(e)
            await until(lambda: sample(registry, "slack", "rejected") == 1.0)
        assert 0.0 == registry.get_sample_value("pam_monitor_notification_queue_depth")
        assert 1 == len(rec.paths())
        rejected = [entry for entry in logs if entry["event"] == "notification.rejected"]
        assert [("slack", 400, "error")] == [(r["sink"], r["status_code"], r["log_level"]) for r in rejected]
    finally:
        await e.aclose(1.0)


async def test_pagerduty_trigger_and_resolve_share_dedup_key(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """PagerDuty gets trigger then resolve with one dedup_key, the routing key, and a mapped severity."""
    rec, url = recorder
    registry = prometheus_client.CollectorRegistry()
    e = engine(make_config(tmp_path, sinks=[sinks(url)[2]]), registry)
    await e.start()
    try:
        fire(e)
        await until(lambda: sample(registry, "pagerduty", "sent") == 1.0)
        heal(e)
        await until(lambda: sample(registry, "pagerduty", "sent") == 2.0)
        trigger, resolve = (r["json"] for r in rec.requests)
        assert ("trigger", "resolve") == (trigger["event_action"], resolve["event_action"])
        assert trigger["dedup_key"] == resolve["dedup_key"]
        assert (ROUTING_KEY, "critical") == (trigger["routing_key"], trigger["payload"]["severity"])
    finally:
        await e.aclose(1.0)


async def test_secrets_never_in_logs_metrics_or_status(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Slack URL token, webhook header and routing key appear in no log entry, metric or active alert."""
    rec, url = recorder
    rec.script = [500, 400, 503]  # some retries and a rejection, so the error paths log too
    registry = prometheus_client.CollectorRegistry()
    e = engine(make_config(tmp_path, sinks=sinks(url)), registry)
    await e.start()
    try:
        with structlog.testing.capture_logs() as logs:
            fire(e)
            # three sinks: one rejected (1 request), two retried once (2 each)
            await until(lambda: len(rec.paths()) >= 5)
            await until(lambda: registry.get_sample_value("pam_monitor_notification_queue_depth") == 0.0)
        assert 5 == len(rec.paths())
        text = repr(logs) + prometheus_client.generate_latest(registry).decode() + repr(e.active_alerts())
        assert any(entry["event"] == "notification.sent" for entry in logs)
        for secret in (SLACK_TOKEN, "slacksecrettoken123", "headersecret456", ROUTING_KEY):
            assert secret not in text
        hosts = {entry.get("host") for entry in logs if entry["event"].startswith("notification.")}
        assert {url.removeprefix("http://")} == hosts
    finally:
        await e.aclose(1.0)


async def test_reminders_skip_alertmanager_and_watchdog_skips_pagers(recorder: tuple[Recorder, str],
                                                                    tmp_path: Path) -> None:
    """MonitorWatchdog is never sent to Slack/webhook/PagerDuty (it would page forever)."""
    rec, url = recorder
    registry = prometheus_client.CollectorRegistry()
    e = engine(make_config(tmp_path, sinks=sinks(url), alerts={"resend_interval": "1s"}), registry)
    await e.start()
    try:
        fire(e)
        await until(lambda: len(rec.paths()) >= 3)
        await asyncio.sleep(1.2)  # past one resend interval
        labels = [r["json"] for r in rec.requests]
        assert "MonitorWatchdog" not in repr(labels)
        assert 3 == len(labels)
    finally:
        await e.aclose(1.0)
