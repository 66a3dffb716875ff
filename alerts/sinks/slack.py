"""Slack incoming-webhook sink: a text line plus Block Kit blocks; the webhook URL is a secret (it is the token)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from alerts.model import WATCHDOG, Event, Notification, SinkContext
from alerts.sinks.spec import SendResult, SinkSpec, host_of, post_json
from monitor.core.clock import iso
from monitor.core.config import SlackSink

_WORDING = {
    Event.FIRING: ":rotating_light: FIRING",
    Event.REMINDER: ":rotating_light: STILL FIRING",
    Event.FLAPPING: ":warning: FLAPPING",
    Event.RESOLVED: ":white_check_mark: RESOLVED",
}
TEXT_LIMIT = 2900  # a section block's text is limited to 3000 characters

_LINKS = (("runbook_url", "runbook"), ("dashboard_url", "dashboard"), ("status_url", "status page"))


def _link(url: str) -> str:
    """A URL inside Slack's <url|text>: its control characters escaped as Slack asks (&, <, >), and | encoded."""
    return url.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "%7C")

class SlackSpec:
    """The Slack sink: one message per notification, one lane."""

    kind = "slack"
    batch_size = 1
    resends = False
    honours_inhibition = False

    def lanes(self, sink: SlackSink) -> Sequence[str]:
        """A single lane to the webhook."""
        return [host_of(sink.url.get_secret_value())]

    def accepts(self, notification: Notification) -> bool:
        """Everything but the watchdog (it would post forever)."""
        return notification.alertname != WATCHDOG

    def build_payload(
        self, sink: SlackSink, notifications: Sequence[Notification], *, ctx: SinkContext, now: float
    ) -> dict[str, Any]:
        """The webhook body for one notification."""
        notification = notifications[0]
        labels = notification.labels
        head = f"{_WORDING[notification.event]}: {notification.alertname} on {labels.get('check', ctx.service)}"
        summary = notification.annotations.get("summary", "")
        lines = [f"*{head}*"]
        if summary:
            lines.append(summary if not notification.resolved else f"was: {summary}")
        also = notification.annotations.get("also_failing")
        if also and not notification.resolved:
            lines.append(also)
        lines.append(f"severity `{labels.get('severity', '')}` · service `{labels.get('service', ctx.service)}`"
                     f" · since {iso(notification.starts_at)}")
        extra = [f"{k}={v}" for k, v in sorted(labels.items())
                 if k not in ("alertname", "check", "severity", "service")]
        if extra:
            lines.append("labels: " + ", ".join(extra))
        runbook = notification.annotations.get("runbook")
        if runbook and not notification.resolved:
            lines.append(f"runbook: {runbook}")
        shown = [f"<{_link(notification.annotations[key])}|{text}>" for key, text in _LINKS
                 if notification.annotations.get(key)]
        if shown:
            lines.append(" · ".join(shown))
        text = "\n".join(lines)[:TEXT_LIMIT]
        return {
            "text": f"{head}: {summary}"[:TEXT_LIMIT] if summary else head,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        }

    async def send(
        self, client: httpx.AsyncClient, sink: SlackSink, notifications: Sequence[Notification], *,
        ctx: SinkContext, now: float, lane: int,
    ) -> SendResult:
        """Post one message."""
        body = self.build_payload(sink, notifications, ctx=ctx, now=now)
        return await post_json(client, sink.url.get_secret_value(), body, timeout=sink.timeout)


SPEC: SinkSpec[SlackSink] = SlackSpec()
