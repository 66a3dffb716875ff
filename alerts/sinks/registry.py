"""The sink registry: config `kind` -> the sink module's spec. Adding a sink is its module plus one line here
(and its config model in monitor/core/config/alerting.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alerts.sinks import alertmanager, pagerduty, slack, webhook
from alerts.sinks.spec import SinkSpec

SINKS: Mapping[str, SinkSpec[Any]] = {
    "alertmanager": alertmanager.SPEC,
    "pagerduty": pagerduty.SPEC,
    "slack": slack.SPEC,
    "webhook": webhook.SPEC,
}
