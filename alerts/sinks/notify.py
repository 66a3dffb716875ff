"""`pam-monitor notify --test`: one clearly marked test notification to every configured sink (or one named sink),
sent at once through each sink's own spec (`build_payload` + `send`, the code the outbox worker runs), never queued;
what each sink answered, in words that hold no URL and no secret.

The test alert is `PamMonitorTest`, severity `none`, label `test="true"`, with the external labels and the service,
so routing that matches them applies; Alertmanager gets its `endsAt` `CLEARS_AFTER` ahead, so it clears itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from alerts.labels import label_name
from alerts.links import status_base
from alerts.model import Event, Notification, SinkContext
from alerts.sinks.registry import SINKS
from alerts.sinks.spec import SinkSpec, classify, http_client
from monitor.core.config import Config

TEST_ALERTNAME = "PamMonitorTest"
CLEARS_AFTER = 300.0
"""Seconds until the test alert ends by itself (its `endsAt`)."""

Said = Literal["accepted", "rejected", "unreachable", "skipped"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What one sink (one URL of it) answered to the test notification."""

    sink: str  # its display name, plus `#i` for URL number i of a sink with several (an HA Alertmanager pair)
    host: str  # the host and port: the only part of a sink URL that may be shown
    said: Said
    status_code: int | None = None
    error: str | None = None  # the exception type when it could not be reached

    @property
    def accepted(self) -> bool:
        """Whether the sink took the notification (a 2xx)."""
        return self.said == "accepted"

    def line(self) -> str:
        """One line for people: `webhook (127.0.0.1:8080): rejected (HTTP 400): ...`."""
        head = f"{self.sink} ({self.host})"
        if self.said == "accepted":
            return f"{head}: accepted (HTTP {self.status_code})"
        if self.said == "skipped":
            return f"{head}: skipped (this kind of sink takes no such notification)"
        if self.said == "unreachable":
            return f"{head}: unreachable ({self.error}): check the URL, the network and that the sink is up"
        retried = self.status_code is not None and classify(self.status_code) == "retry"
        why = ("the sink is failing or busy; the daemon would retry it" if retried
               else "a configuration error (URL, key or payload); the daemon would not retry it")
        return f"{head}: rejected (HTTP {self.status_code}): {why}"


def build_test_notification(config: Config, sink: str, now: float) -> Notification:
    """The test notification for the sink named `sink` (its display name goes into the summary)."""
    labels = {label_name(k): str(v) for k, v in config.alerts.external_labels.items()}
    labels.update(alertname=TEST_ALERTNAME, severity="none", service=config.service, test="true")
    annotations = {
        "summary": f"Test notification from pam-monitor (service {config.service}): if you see this, the {sink} sink "
                   "works",
        "description": "Sent by `pam-monitor notify --test`. Nothing is wrong: this is not an alert, and it ends "
                       f"by itself in {CLEARS_AFTER / 60:g} min.",
    }
    return Notification(key=f"{TEST_ALERTNAME}/{sink}", event=Event.FIRING, labels=labels, annotations=annotations,
                        starts_at=now, at=now, ends_at=now + CLEARS_AFTER)


def chosen_sinks(config: Config, only: str | None) -> list[Any]:
    """The configured sinks to test: all of them, or the one whose name (or kind, when unnamed) is `only`."""
    return [s for s in config.alerts.sinks if only is None or s.display_name == only]


async def send_tests(config: Config, sinks: Sequence[Any], *, now: float, client: httpx.AsyncClient | None = None,
                     specs: Mapping[str, SinkSpec[Any]] = SINKS) -> list[Answer]:
    """Send the test notification to every URL of every given sink at once; their answers, in the sinks' order.
    Without a `client`, one is made for the occasion, as the daemon's (alerts.sinks.spec.http_client: no redirect, the
    environment's proxy only with alerts.trust_env)."""
    if client is None:
        async with http_client(config) as own:
            return await send_tests(config, sinks, now=now, client=own, specs=specs)
    ctx = SinkContext(service=config.service, resend_interval=config.alerts.resend_interval,
                      generator_url=status_base(config))
    jobs = []
    for sink in sinks:
        spec, name = specs[sink.kind], str(sink.display_name)
        note = build_test_notification(config, name, now)
        hosts = spec.lanes(sink)
        for lane, host in enumerate(hosts):
            label = f"{name}#{lane}" if len(hosts) > 1 else name
            jobs.append(_send(spec, sink, label, host, lane, note, client, ctx, now))
    return list(await asyncio.gather(*jobs))


async def _send(spec: SinkSpec[Any], sink: Any, label: str, host: str, lane: int, note: Notification,
                client: httpx.AsyncClient, ctx: SinkContext, now: float) -> Answer:
    if not spec.accepts(note):
        return Answer(label, host, "skipped")
    result = await spec.send(client, sink, [note], ctx=ctx, now=now, lane=lane)
    if result.verdict == "accepted":
        return Answer(label, host, "accepted", result.status_code)
    if result.status_code is not None:
        return Answer(label, host, "rejected", result.status_code)
    return Answer(label, host, "unreachable", error=result.error)
