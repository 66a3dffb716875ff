"""Alertmanager API v2 sink: `POST <url>/api/v2/alerts` with a list of {labels, annotations, startsAt, endsAt}.

Firing alerts carry `endsAt` a few resend intervals ahead and are re-posted every `resend_interval`, so an
Alertmanager that restarts (or a daemon that dies) converges; a resolution carries `endsAt` = the resolve time.
Identical label sets from several replicas are one alert in Alertmanager (it keys alerts by label fingerprint).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from alerts.delivery import SendResult, post_json
from alerts.model import Notification, SinkContext
from monitor.core.clock import iso
from monitor.core.config import AlertmanagerSink

RESEND_FACTOR = 4
"""A firing alert's endsAt is this many resend intervals ahead (Prometheus uses 4x its resend delay)."""


def build_payload(notifications: Sequence[Notification], *, ctx: SinkContext, now: float) -> list[dict[str, Any]]:
    """The request body: one postable alert per notification (the last one wins for a repeated key)."""
    latest: dict[str, Notification] = {}
    for n in notifications:
        latest.pop(n.key, None)
        latest[n.key] = n
    out = []
    for n in latest.values():
        annotations = dict(n.annotations)
        if n.event == "flapping":
            annotations["flapping"] = "true"
        ends = n.ends_at if n.resolved and n.ends_at is not None else now + RESEND_FACTOR * ctx.resend_interval
        alert: dict[str, Any] = {
            "labels": dict(n.labels),
            "annotations": annotations,
            "startsAt": iso(min(n.starts_at, ends)),
            "endsAt": iso(ends),
        }
        if ctx.generator_url:
            alert["generatorURL"] = ctx.generator_url
        out.append(alert)
    return out


def alerts_url(base: str) -> str:
    """The v2 alerts endpoint under an Alertmanager base URL."""
    return base.rstrip("/") + "/api/v2/alerts"


async def send(
    client: httpx.AsyncClient, sink: AlertmanagerSink, notifications: Sequence[Notification], *,
    ctx: SinkContext, now: float, url_index: int = 0,
) -> SendResult:
    """Post the notifications to one of the sink's Alertmanagers."""
    headers = {k: v.get_secret_value() for k, v in sink.headers.items()}
    body = build_payload(notifications, ctx=ctx, now=now)
    return await post_json(client, alerts_url(sink.all_urls()[url_index]), body, headers=headers,
                           timeout=sink.timeout)
