"""Alertmanager API v2 sink: `POST <url>/api/v2/alerts` with a list of {labels, annotations, startsAt, endsAt}.

Firing alerts carry `endsAt` a few resend intervals ahead and are re-posted every `resend_interval`, so an
Alertmanager that restarts (or a daemon that dies) converges; a resolution carries `endsAt` = the resolve time, and
a firing notification that knows when it ends (`pam-monitor notify --test`) carries that.
Identical label sets from several replicas are one alert in Alertmanager (it keys alerts by label fingerprint).
Alertmanager repeats notifications on its own (its repeat_interval), so reminders are not sent to it; the
MonitorWatchdog is, on every re-post (route it to a dead man's switch). One lane per URL of an HA cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from alerts.model import Event, Notification, SinkContext
from alerts.sinks.spec import SendResult, SinkSpec, host_of, post_json
from monitor.core.clock import iso
from monitor.core.config import AlertmanagerSink

RESEND_FACTOR = 4
"""A firing alert's endsAt is this many resend intervals ahead (Prometheus uses 4x its resend delay)."""


def alerts_url(base: str) -> str:
    """The v2 alerts endpoint under an Alertmanager base URL."""
    return base.rstrip("/") + "/api/v2/alerts"


class AlertmanagerSpec:
    """The Alertmanager sink: batches, one lane per URL, re-posts firing alerts."""

    kind = "alertmanager"
    batch_size = 64
    resends = True
    honours_inhibition = True

    def lanes(self, sink: AlertmanagerSink) -> Sequence[str]:
        """One lane per Alertmanager of the cluster."""
        return [host_of(url) for url in sink.all_urls()]

    def accepts(self, notification: Notification) -> bool:
        """Everything but reminders (Alertmanager repeats on its own)."""
        return notification.event is not Event.REMINDER

    def build_payload(
        self, sink: AlertmanagerSink, notifications: Sequence[Notification], *, ctx: SinkContext, now: float
    ) -> list[dict[str, Any]]:
        """One postable alert per notification (the last one wins for a repeated key)."""
        latest: dict[str, Notification] = {}
        for n in notifications:
            latest.pop(n.key, None)
            latest[n.key] = n
        out = []
        for n in latest.values():
            annotations = dict(n.annotations)
            if n.event is Event.FLAPPING:
                annotations["flapping"] = "true"
            # A resolution ends at its time; a firing alert that knows its end (a test) at that; others are renewed.
            ends = n.ends_at if n.ends_at is not None else now + RESEND_FACTOR * ctx.resend_interval
            alert: dict[str, Any] = {
                "labels": dict(n.labels),
                "annotations": annotations,
                "startsAt": iso(min(n.starts_at, ends)),
                "endsAt": iso(ends),
            }
            # The check's row on the status page (alerts/links.py), else the page itself.
            generator = n.annotations.get("status_url") or ctx.generator_url
            if generator:
                alert["generatorURL"] = generator
            out.append(alert)
        return out

    async def send(
        self, client: httpx.AsyncClient, sink: AlertmanagerSink, notifications: Sequence[Notification], *,
        ctx: SinkContext, now: float, lane: int,
    ) -> SendResult:
        """Post the batch to the lane's Alertmanager."""
        headers = {k: v.get_secret_value() for k, v in sink.headers.items()}
        body = self.build_payload(sink, notifications, ctx=ctx, now=now)
        return await post_json(client, alerts_url(sink.all_urls()[lane]), body, headers=headers,
                               timeout=sink.timeout)


SPEC: SinkSpec[AlertmanagerSink] = AlertmanagerSpec()
