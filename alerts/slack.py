"""Slack incoming-webhook sink: a text line plus Block Kit blocks; the webhook URL is a secret (it is the token)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from alerts.delivery import SendResult, post_json
from alerts.model import Notification, SinkContext
from monitor.core.clock import iso
from monitor.core.config import SlackSink

_WORDING = {
    "firing": ":rotating_light: FIRING",
    "reminder": ":rotating_light: STILL FIRING",
    "flapping": ":warning: FLAPPING",
    "resolved": ":white_check_mark: RESOLVED",
}
TEXT_LIMIT = 2900  # a section block's text is limited to 3000 characters


def build_payload(notification: Notification, *, ctx: SinkContext) -> dict[str, Any]:
    """The webhook body for one notification."""
    labels = notification.labels
    head = f"{_WORDING[notification.event]}: {notification.alertname} on {labels.get('check', ctx.service)}"
    summary = notification.annotations.get("summary", "")
    lines = [f"*{head}*"]
    if summary:
        lines.append(summary if not notification.resolved else f"was: {summary}")
    lines.append(f"severity `{labels.get('severity', '')}` · service `{labels.get('service', ctx.service)}`"
                 f" · since {iso(notification.starts_at)}")
    extra = [f"{k}={v}" for k, v in sorted(labels.items())
             if k not in ("alertname", "check", "severity", "service")]
    if extra:
        lines.append("labels: " + ", ".join(extra))
    runbook = notification.annotations.get("runbook")
    if runbook and not notification.resolved:
        lines.append(f"runbook: {runbook}")
    text = "\n".join(lines)[:TEXT_LIMIT]
    return {
        "text": f"{head}: {summary}"[:TEXT_LIMIT] if summary else head,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }


async def send(
    client: httpx.AsyncClient, sink: SlackSink, notifications: Sequence[Notification], *,
    ctx: SinkContext, now: float, url_index: int = 0,
) -> SendResult:
    """Post one message."""
    return await post_json(client, sink.url.get_secret_value(), build_payload(notifications[0], ctx=ctx),
                           timeout=sink.timeout)
