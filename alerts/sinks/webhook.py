"""Generic JSON webhook sink: {version, status, event, service, alerts: [...]}; URL and headers are secrets.

The body is a public contract: docs/webhook-payload.schema.json and the README's "Webhook payload" section
(tests/alerts/sinks/test_webhook_schema.py holds the three equal). Change it only by adding fields, or bump VERSION.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from alerts.model import WATCHDOG, Event, Notification, SinkContext, fingerprint
from alerts.sinks.spec import SendResult, SinkSpec, host_of, post_json
from monitor.core.clock import iso
from monitor.core.config import WebhookSink

VERSION = "1"


class WebhookSpec:
    """The generic webhook: one notification per request, one lane."""

    kind = "webhook"
    batch_size = 1
    resends = False
    honours_inhibition = False

    def lanes(self, sink: WebhookSink) -> Sequence[str]:
        """A single lane to the URL."""
        return [host_of(sink.url.get_secret_value())]

    def accepts(self, notification: Notification) -> bool:
        """Everything but the watchdog."""
        return notification.alertname != WATCHDOG

    def build_payload(
        self, sink: WebhookSink, notifications: Sequence[Notification], *, ctx: SinkContext, now: float
    ) -> dict[str, Any]:
        """The body for one notification (a list of one alert, so receivers can batch later without a change)."""
        notification = notifications[0]
        status = "resolved" if notification.resolved else "firing"
        return {
            "version": VERSION,
            "status": status,
            "event": notification.event.value,
            "service": ctx.service,
            "alerts": [{
                "status": status,
                "labels": dict(notification.labels),
                "annotations": dict(notification.annotations),
                "startsAt": iso(notification.starts_at),
                "endsAt": iso(notification.ends_at) if notification.ends_at is not None else None,
                "fingerprint": fingerprint(notification.labels),
                "flapping": notification.event is Event.FLAPPING,
            }],
        }

    async def send(
        self, client: httpx.AsyncClient, sink: WebhookSink, notifications: Sequence[Notification], *,
        ctx: SinkContext, now: float, lane: int,
    ) -> SendResult:
        """Post one notification."""
        headers = {k: v.get_secret_value() for k, v in sink.headers.items()}
        body = self.build_payload(sink, notifications, ctx=ctx, now=now)
        return await post_json(client, sink.url.get_secret_value(), body, headers=headers, timeout=sink.timeout)


SPEC: SinkSpec[WebhookSink] = WebhookSpec()
