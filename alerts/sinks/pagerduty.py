"""PagerDuty Events API v2 sink: trigger / resolve with a `dedup_key` stable per alert (hash of its labels).

PagerDuty answers 202 when it accepted an event, 400 for an invalid one, 429 when throttled.
MonitorWatchdog is never sent here: an always-firing alert would page forever (use Alertmanager's
dead man's switch routing for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from alerts.model import WATCHDOG, Event, Notification, SinkContext, fingerprint
from alerts.sinks.spec import SendResult, SinkSpec, host_of, post_json
from monitor.core.clock import iso
from monitor.core.config import PagerDutySink

SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info", "none": "info"}
SUMMARY_LIMIT = 1024
_LINKS = (("runbook_url", "Runbook"), ("dashboard_url", "Dashboard"), ("status_url", "Status page"))


def dedup_key(notification: Notification) -> str:
    """The same for every event of one alert (and on every replica): a hash of its labels."""
    return fingerprint(notification.labels)


class PagerDutySpec:
    """The PagerDuty sink: one event per request, one lane."""

    kind = "pagerduty"
    batch_size = 1
    resends = False
    honours_inhibition = False

    def lanes(self, sink: PagerDutySink) -> Sequence[str]:
        """A single lane to the Events API."""
        return [host_of(sink.url)]

    def accepts(self, notification: Notification) -> bool:
        """Everything but the watchdog."""
        return notification.alertname != WATCHDOG

    def build_payload(
        self, sink: PagerDutySink, notifications: Sequence[Notification], *, ctx: SinkContext, now: float
    ) -> dict[str, Any]:
        """The Events v2 body for one notification."""
        notification = notifications[0]
        body: dict[str, Any] = {
            "routing_key": sink.routing_key.get_secret_value(),
            "dedup_key": dedup_key(notification),
            "event_action": "resolve" if notification.resolved else "trigger",
        }
        if notification.resolved:
            return body
        labels = notification.labels
        summary = notification.annotations.get("summary") or notification.alertname
        prefix = "[flapping] " if notification.event is Event.FLAPPING else ""
        summary = f"{prefix}{notification.alertname} {labels.get('check', '')}: {summary}".strip()
        body["payload"] = {
            "summary": summary[:SUMMARY_LIMIT],
            "source": f"{labels.get('service', ctx.service)}/{labels.get('check', '')}".rstrip("/"),
            "severity": SEVERITY.get(labels.get("severity", ""), "error"),
            "timestamp": iso(notification.at),
            "component": labels.get("check", ""),
            "group": labels.get("service", ctx.service),
            "class": notification.alertname,
            "custom_details": {"labels": dict(labels), "annotations": dict(notification.annotations),
                               "event": notification.event.value, "starts_at": iso(notification.starts_at)},
        }
        body["client"] = "pam-monitor"
        notes = notification.annotations
        if notes.get("status_url") or ctx.generator_url:
            body["client_url"] = notes.get("status_url") or ctx.generator_url
        shown = [{"href": notes[key], "text": text} for key, text in _LINKS if notes.get(key)]
        if shown:
            body["links"] = shown
        return body

    async def send(
        self, client: httpx.AsyncClient, sink: PagerDutySink, notifications: Sequence[Notification], *,
        ctx: SinkContext, now: float, lane: int,
    ) -> SendResult:
        """Send one event."""
        body = self.build_payload(sink, notifications, ctx=ctx, now=now)
        return await post_json(client, sink.url, body, timeout=sink.timeout)


SPEC: SinkSpec[PagerDutySink] = PagerDutySpec()
