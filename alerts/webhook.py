"""Generic JSON webhook sink: {version, status, event, service, alerts: [...]}; URL and headers are secrets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from alerts.delivery import SendResult, post_json
from alerts.model import Notification, SinkContext, fingerprint
from monitor.core.clock import iso
from monitor.core.config import WebhookSink

VERSION = "1"


def build_payload(notification: Notification, *, ctx: SinkContext) -> dict[str, Any]:
    """The body for one notification (a list of one alert, so receivers can batch later without a change)."""
    status = "resolved" if notification.resolved else "firing"
    return {
        "version": VERSION,
        "status": status,
        "event": notification.event,
        "service": ctx.service,
        "alerts": [{
            "status": status,
            "labels": dict(notification.labels),
            "annotations": dict(notification.annotations),
            "startsAt": iso(notification.starts_at),
            "endsAt": iso(notification.ends_at) if notification.ends_at is not None else None,
            "fingerprint": fingerprint(notification.labels),
            "flapping": notification.event == "flapping",
        }],
    }


async def send(
    client: httpx.AsyncClient, sink: WebhookSink, notifications: Sequence[Notification], *,
    ctx: SinkContext, now: float, url_index: int = 0,
) -> SendResult:
    """Post one notification."""
    headers = {k: v.get_secret_value() for k, v in sink.headers.items()}
    return await post_json(client, sink.url.get_secret_value(), build_payload(notifications[0], ctx=ctx),
                           headers=headers, timeout=sink.timeout)
