"""Delivery to real local HTTP sinks: retry with backoff, 4xx not retried, stable dedup keys, no secret leaks,
who gets reminders and the watchdog, and a sink known only through its spec."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import structlog

from alerts import AlertEngine
from alerts.model import Notification, SinkContext
from alerts.sinks.spec import SendResult, SinkSpec, host_of, post_json
from monitor.core.config import Config, WebhookSink
from tests.support.alerting import (
    REGRESSING,
    Recorder,
    fire_regression,
    heal_regression,
    make_config,
    make_engine,
    queue_depth,
    result,
    sent,
)
from tests.support.clock import FakeClock
from tests.support.poll import until_async

CHECK = REGRESSING
SLACK_TOKEN = "T0FAKE/B0FAKE/slacksecrettoken123"
HEADER_SECRET = "Bearer headersecret456"
ROUTING_KEY = "routingkeysecret789routingkeysec"
SLACK, HOOK, PAGERDUTY, AM = "/slack/services/" + SLACK_TOKEN, "/hook", "/v2/enqueue", "/am/api/v2/alerts"


def sinks(url: str) -> list[dict[str, Any]]:
    """Slack, webhook and PagerDuty sinks pointing at the recorder."""
    return [
        {"kind": "slack", "url": url + SLACK, "max_attempts": 5},
        {"kind": "webhook", "url": url + HOOK, "headers": {"Authorization": HEADER_SECRET}, "max_attempts": 5},
        {"kind": "pagerduty", "routing_key": ROUTING_KEY, "url": url + PAGERDUTY, "max_attempts": 5},
    ]


def engine(config: Config, registry: prometheus_client.CollectorRegistry, **options: Any) -> AlertEngine:
    """An engine with fast retries, that gives queued notifications a second to go out when it stops."""
    return make_engine(config, registry, backoff_base=0.02, backoff_cap=0.2, flush_timeout=1.0, **options)




async def test_retries_5xx_and_429_then_succeeds(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A webhook answering 500, then 429, then 200 gets the same notification three times; counted 2 retried, 1 sent."""
    rec, url = recorder
    rec.script = [500, 429]
    registry = prometheus_client.CollectorRegistry()
    async with engine(make_config(tmp_path, sinks=[sinks(url)[1]]), registry) as e:
        fire_regression(e)
        await until_async(lambda: sent(registry, "webhook") == 1.0)
        assert [HOOK, HOOK, HOOK] == rec.paths()
        assert 2.0 == sent(registry, "webhook", "retried")
        bodies = [r["json"] for r in rec.requests]
        assert bodies[0] == bodies[2]
        assert ("firing", "ContractRegression") == (bodies[2]["status"], bodies[2]["alerts"][0]["labels"]["alertname"])
        assert HEADER_SECRET == rec.requests[0]["headers"]["authorization"]


async def test_4xx_is_a_config_error_not_retried(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Slack answering 400: one request, counted rejected, the outbox empties (nothing left to retry)."""
    rec, url = recorder
    rec.script = [400]
    registry = prometheus_client.CollectorRegistry()
    async with engine(make_config(tmp_path, sinks=[sinks(url)[0]]), registry) as e:
        with structlog.testing.capture_logs() as logs:
            fire_regression(e)
            await until_async(lambda: sent(registry, "slack", "rejected") == 1.0)
        assert 0.0 == queue_depth(registry)
        assert 1 == len(rec.paths())
        rejected = [entry for entry in logs if entry["event"] == "notification.rejected"]
        assert [("slack", 400, "error")] == [(r["sink"], r["status_code"], r["log_level"]) for r in rejected]


async def test_pagerduty_trigger_and_resolve_share_dedup_key(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """PagerDuty gets trigger then resolve with one dedup_key, the routing key, and a mapped severity."""
    rec, url = recorder
    registry = prometheus_client.CollectorRegistry()
    async with engine(make_config(tmp_path, sinks=[sinks(url)[2]]), registry) as e:
        fire_regression(e)
        await until_async(lambda: sent(registry, "pagerduty") == 1.0)
        heal_regression(e)
        await until_async(lambda: sent(registry, "pagerduty") == 2.0)
        trigger, resolve = (r["json"] for r in rec.requests)
        assert ("trigger", "resolve") == (trigger["event_action"], resolve["event_action"])
        assert trigger["dedup_key"] == resolve["dedup_key"]
        assert (ROUTING_KEY, "critical") == (trigger["routing_key"], trigger["payload"]["severity"])


async def test_secrets_never_in_logs_metrics_or_status(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Slack URL token, webhook header and routing key appear in no log entry, metric or active alert."""
    rec, url = recorder
    rec.script = [500, 400, 503]  # some retries and a rejection, so the error paths log too
    registry = prometheus_client.CollectorRegistry()
    async with engine(make_config(tmp_path, sinks=sinks(url)), registry) as e:
        with structlog.testing.capture_logs() as logs:
            fire_regression(e)
            # three sinks: one rejected (1 request), two retried once (2 each)
            await until_async(lambda: len(rec.paths()) >= 5)
            await until_async(lambda: queue_depth(registry) == 0.0)
        assert 5 == len(rec.paths())
        text = repr(logs) + prometheus_client.generate_latest(registry).decode() + repr(e.active_alerts())
        assert any(entry["event"] == "notification.sent" for entry in logs)
        for secret in (SLACK_TOKEN, "slacksecrettoken123", "headersecret456", ROUTING_KEY):
            assert secret not in text
        hosts = {entry.get("host") for entry in logs if entry["event"].startswith("notification.")}
        assert {url.removeprefix("http://")} == hosts


async def test_reminders_skip_alertmanager_and_watchdog_skips_pagers(recorder: tuple[Recorder, str],
                                                                    tmp_path: Path) -> None:
    """Still firing after repeat_interval: Slack, webhook and PagerDuty get a reminder; Alertmanager gets none
    queued (its outbox count stays at the one firing) but the re-post of the alert, with the MonitorWatchdog;
    no pager ever gets the watchdog."""
    rec, url = recorder
    registry = prometheus_client.CollectorRegistry()
    clock = FakeClock()
    config = make_config(tmp_path, sinks=[*sinks(url), {"kind": "alertmanager", "url": url + "/am"}])
    pagers = (SLACK, HOOK, PAGERDUTY)

    def watchdog_posted(bodies: list[Any]) -> bool:
        return any(a["labels"]["alertname"] == "MonitorWatchdog" for body in bodies for a in body)

    async with engine(config, registry, clock=clock) as e:
        fire_regression(e)
        await until_async(lambda: [1, 1, 1] == [len(rec.bodies(p)) for p in pagers]
                          and sent(registry, "alertmanager") == 1 and watchdog_posted(rec.bodies(AM)))
        posts_before = len(rec.bodies(AM))
        clock.advance(config.alerts.repeat_interval)
        e.observe(result(CHECK, "server_error", status=500, at=clock.now))
        await until_async(lambda: [2, 2, 2] == [len(rec.bodies(p)) for p in pagers]
                          and len(rec.bodies(AM)) > posts_before and queue_depth(registry) == 0.0)
        slack_body, hook_body, pd_body = (rec.bodies(p)[1] for p in pagers)
        assert slack_body["text"].startswith(":rotating_light: STILL FIRING: ContractRegression")
        assert ("reminder", "reminder", "trigger") == (
            hook_body["event"], pd_body["payload"]["custom_details"]["event"], pd_body["event_action"])
        assert 1.0 == sent(registry, "alertmanager")
        resent = rec.bodies(AM)[posts_before]
        assert {"ContractRegression", "MonitorWatchdog"} == {a["labels"]["alertname"] for a in resent}
        assert "MonitorWatchdog" not in repr([rec.bodies(p) for p in pagers])


class TwoLaneBatchingHook:
    """A made-up sink for the webhook config: two lanes to the same server, batches of three, re-posts."""

    kind = "webhook"
    batch_size = 3
    resends = True
    honours_inhibition = False

    def lanes(self, sink: WebhookSink) -> Sequence[str]:
        """Two lanes."""
        return [host_of(sink.url.get_secret_value())] * 2

    def accepts(self, notification: Notification) -> bool:
        """Everything, the watchdog included."""
        return True

    def build_payload(self, sink: WebhookSink, notifications: Sequence[Notification], *, ctx: SinkContext,
                      now: float) -> Any:
        """The alertnames and events of the batch."""
        return [{"alertname": n.alertname, "event": n.event.value} for n in notifications]

    async def send(self, client: httpx.AsyncClient, sink: WebhookSink, notifications: Sequence[Notification], *,
                   ctx: SinkContext, now: float, lane: int) -> SendResult:
        """Post to `<url>/<lane>`."""
        body = self.build_payload(sink, notifications, ctx=ctx, now=now)
        return await post_json(client, f"{sink.url.get_secret_value()}/{lane}", body)


async def test_delivery_knows_a_sink_only_through_its_spec(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A sink registered with a spec of its own gets its lanes, its batch size and its re-posts: the engine
    special-cases no sink by name."""
    spec: SinkSpec[WebhookSink] = TwoLaneBatchingHook()
    rec, url = recorder
    registry = prometheus_client.CollectorRegistry()
    config = make_config(tmp_path, sinks=[{"kind": "webhook", "url": url + "/hook"}])
    async with engine(config, registry, sinks={"webhook": spec}) as e:
        e.observe(result("backend_health", "ok", status=200))
        e.observe(result("backend_health", "server_error", status=500))
        e.observe(result("backend_health", "server_error", status=500))  # ContractRegression and EndpointDown fire
        await until_async(lambda: all(len(rec.bodies(f"/hook/{lane}")) >= 2 for lane in (0, 1)))
        for lane in (0, 1):
            batch, resend = rec.bodies(f"/hook/{lane}")[:2]
            assert [{"alertname": "ContractRegression", "event": "firing"},
                    {"alertname": "EndpointDown", "event": "firing"}] == batch
            assert {"ContractRegression", "EndpointDown", "MonitorWatchdog"} == {n["alertname"] for n in resend}
        assert 4.0 == sent(registry, "webhook")


async def test_a_failing_repost_warns_once_per_spell(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Alertmanager refusing re-posts three times in a row gives one warning, then info lines; the first
    accepted re-post after that says it recovered."""
    rec, url = recorder
    rec.script = [503, 503, 503]
    clock = FakeClock()
    config = make_config(tmp_path, sinks=[{"kind": "alertmanager", "url": url + "/am"}])
    with structlog.testing.capture_logs() as logs:
        async with engine(config, prometheus_client.CollectorRegistry(), clock=clock):
            for posts in range(1, 5):
                await until_async(lambda n=posts: len(rec.bodies(AM)) >= n)
                clock.advance(config.alerts.resend_interval)
            await until_async(lambda: any(e["event"] == "notification.resend_recovered" for e in logs))
    failures = [e["log_level"] for e in logs if e["event"] == "notification.resend_failed"]
    assert ["warning", "info", "info"] == failures


class SteppedClock(FakeClock):
    """A FakeClock whose wall clock can be stepped (an NTP step) while monotonic time goes on untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def time(self) -> float:
        """The monotonic reading plus the step so far."""
        return self.now + self.offset


async def test_a_wall_clock_step_does_not_delay_a_retry(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """The wall clock steps an hour back (monotonic time goes on) after a webhook refused a page: the retry waits
    its backoff, not an hour."""
    rec, url = recorder
    rec.script = [503]
    clock = SteppedClock()
    async with engine(make_config(tmp_path, sinks=[sinks(url)[1]]), prometheus_client.CollectorRegistry(),
                      clock=clock) as e:
        fire_regression(e)
        await until_async(lambda: len(rec.bodies(HOOK)) >= 1)  # refused with 503: a retry is scheduled
        clock.offset = -3600.0

        def retried() -> bool:
            clock.advance(0.05)  # backoff is at most 0.2 s here; on the stepped wall clock it would be an hour
            return len(rec.bodies(HOOK)) >= 2

        await until_async(retried, what="the webhook retry after the step")


async def test_a_wall_clock_step_does_not_stop_reposts(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """The wall clock steps an hour back: Alertmanager still gets a re-post every resend_interval (else every alert
    and the watchdog would expire there), each with endsAt ahead of the stepped wall clock the sink reads."""
    rec, url = recorder
    clock = SteppedClock()
    config = make_config(tmp_path, sinks=[{"kind": "alertmanager", "url": url + "/am"}])
    async with engine(config, prometheus_client.CollectorRegistry(), clock=clock):
        await until_async(lambda: len(rec.bodies(AM)) >= 1)
        clock.offset = -3600.0
        for posts in range(2, 5):
            clock.advance(config.alerts.resend_interval)
            await until_async(lambda n=posts: len(rec.bodies(AM)) >= n, what=f"re-post {posts} after the step")
        ends = [dt.datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")).timestamp() for a in rec.bodies(AM)[-1]]
        assert ends
        assert all(end > clock.time() for end in ends), (ends, clock.time())
