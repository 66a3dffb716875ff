"""Pure payload builders, one per sink: the exact JSON each service receives; and what each sink takes."""

from __future__ import annotations

import random
import typing

from pydantic import SecretStr

from alerts.model import Event, Notification, SinkContext
from alerts.sinks import alertmanager, pagerduty, slack, webhook
from alerts.sinks.delivery import backoff
from alerts.sinks.registry import SINKS
from alerts.sinks.spec import classify, host_of
from monitor.core.config import AlertmanagerSink, PagerDutySink, Sink, SlackSink, WebhookSink

LABELS = {"alertname": "ContractRegression", "check": "settings_get_unauth", "kind": "auth_contract",
          "severity": "critical", "service": "pam-backend", "from": "403", "to": "500"}
NOTES = {"summary": "expected 401|403, got 500 after 0.12 s", "runbook": "check the deploy"}
CTX = SinkContext(service="pam-backend", resend_interval=60.0, generator_url="http://127.0.0.1:9108/")
T = 1_767_225_600.0  # 2026-01-01T00:00:00Z
AM = AlertmanagerSink(kind="alertmanager", urls=["http://10.0.0.1:9093", "http://10.0.0.2:9093/"])
PD = PagerDutySink(kind="pagerduty", routing_key=SecretStr("R" * 32))
SLACK = SlackSink(kind="slack", url=SecretStr("https://hooks.slack.com/services/T/B/secret"))
HOOK = WebhookSink(kind="webhook", url=SecretStr("https://user:pw@hooks.example.com:8443/x"))


def note(event: str = "firing", labels: dict[str, str] | None = None) -> Notification:
    """A notification of the regression (or of another label set)."""
    return Notification(key="ContractRegression/settings_get_unauth", event=Event(event),
                        labels=labels or LABELS, annotations=NOTES, starts_at=T, at=T + 30,
                        ends_at=T + 90 if event == "resolved" else None)


def test_alertmanager_firing_ends_ahead_and_resolved_ends_at_resolution() -> None:
    """Firing: endsAt = now + 4 resend intervals; resolved: endsAt = resolve time; labels untouched."""
    body = alertmanager.SPEC.build_payload(AM, [note()], ctx=CTX, now=T + 30)
    assert [{"labels": LABELS, "annotations": NOTES, "startsAt": "2026-01-01T00:00:00.000Z",
             "endsAt": "2026-01-01T00:04:30.000Z", "generatorURL": "http://127.0.0.1:9108/"}] == body
    body = alertmanager.SPEC.build_payload(AM, [note("resolved")], ctx=CTX, now=T + 500)
    assert "2026-01-01T00:01:30.000Z" == body[0]["endsAt"]


def test_alertmanager_batch_keeps_last_event_per_alert() -> None:
    """A firing and its resolution in one batch post only the resolution (Alertmanager keys by labels)."""
    body = alertmanager.SPEC.build_payload(AM, [note(), note("resolved")], ctx=CTX, now=T + 500)
    assert ["2026-01-01T00:01:30.000Z"] == [a["endsAt"] for a in body]


def test_pagerduty_trigger_and_resolve() -> None:
    """Trigger has payload summary/source/severity/custom_details; resolve is just key, action and dedup_key."""
    trigger = pagerduty.SPEC.build_payload(PD, [note()], ctx=CTX, now=T + 30)
    assert {"routing_key", "dedup_key", "event_action", "payload", "client", "client_url"} == set(trigger)
    assert "trigger" == trigger["event_action"]
    payload = trigger["payload"]
    assert ("critical", "pam-backend/settings_get_unauth") == (payload["severity"], payload["source"])
    assert payload["summary"].endswith("expected 401|403, got 500 after 0.12 s")
    assert LABELS == payload["custom_details"]["labels"]
    resolve = pagerduty.SPEC.build_payload(PD, [note("resolved")], ctx=CTX, now=T + 90)
    assert {"routing_key": "R" * 32, "dedup_key": trigger["dedup_key"], "event_action": "resolve"} == resolve


def test_pagerduty_severity_mapping_and_summary_limit() -> None:
    """Severity none maps to info; a summary longer than 1024 characters is cut."""
    long = Notification(key="k", event=Event.FIRING, labels={**LABELS, "severity": "none"},
                        annotations={"summary": "x" * 5000}, starts_at=T, at=T)
    payload = pagerduty.SPEC.build_payload(PD, [long], ctx=CTX, now=T)["payload"]
    assert ("info", 1024) == (payload["severity"], len(payload["summary"]))


def test_slack_wording() -> None:
    """Firing and resolved read differently; the summary and labels are in the block."""
    firing = slack.SPEC.build_payload(SLACK, [note()], ctx=CTX, now=T + 30)
    assert firing["text"].startswith(":rotating_light: FIRING: ContractRegression on settings_get_unauth")
    assert "from=403" in firing["blocks"][0]["text"]["text"]
    resolved = slack.SPEC.build_payload(SLACK, [note("resolved")], ctx=CTX, now=T + 90)
    assert resolved["text"].startswith(":white_check_mark: RESOLVED: ContractRegression")


def test_webhook_shape() -> None:
    """Generic JSON: version, status, event and a list of alerts with a fingerprint."""
    body = webhook.SPEC.build_payload(HOOK, [note("resolved")], ctx=CTX, now=T + 90)
    assert ("1", "resolved", "resolved", "pam-backend") == (body["version"], body["status"], body["event"],
                                                            body["service"])
    assert "2026-01-01T00:01:30.000Z" == body["alerts"][0]["endsAt"]
    assert pagerduty.dedup_key(note()) == body["alerts"][0]["fingerprint"]


def test_status_classification_and_backoff_bounds() -> None:
    """2xx accepted, 408/429/5xx retried, other 4xx rejected; backoff stays within [0, min(cap, base*2^n))."""
    assert ["accepted", "retry", "retry", "retry", "rejected", "rejected"] == [
        classify(s) for s in (202, 429, 503, 408, 400, 404)]
    rng = random.Random(7)  # noqa: S311 - jitter, not cryptography
    delays = [backoff(n, base=1.0, cap=300.0, rng=rng) for n in range(1, 20)]
    assert all(0.0 <= d < min(300.0, 2.0 ** n) for n, d in zip(range(1, 20), delays, strict=True))
    assert "hooks.slack.com" == host_of("https://hooks.slack.com/services/T/B/secret")


def test_registry_names_every_configured_sink_kind() -> None:
    """SINKS has one spec per kind of the config's Sink union, each registered under its own kind."""
    union = typing.get_args(typing.get_args(Sink)[0])
    kinds = {typing.get_args(model.model_fields["kind"].annotation)[0] for model in union}
    assert kinds == set(SINKS)
    assert {kind: kind for kind in SINKS} == {kind: spec.kind for kind, spec in SINKS.items()}


def test_lanes_are_one_per_url_and_name_only_the_host() -> None:
    """An Alertmanager HA pair is two lanes; the others one; a lane shows host and port, never a path or a token."""
    assert ["10.0.0.1:9093", "10.0.0.2:9093"] == list(alertmanager.SPEC.lanes(AM))
    assert ["events.pagerduty.com"] == list(pagerduty.SPEC.lanes(PD))
    assert ["hooks.slack.com"] == list(slack.SPEC.lanes(SLACK))
    assert ["hooks.example.com:8443"] == list(webhook.SPEC.lanes(HOOK))


def test_reminders_skip_alertmanager_and_the_watchdog_goes_to_alertmanager_only() -> None:
    """Alertmanager takes every event but reminders (it repeats on its own) and the watchdog; the pagers take
    reminders and never the watchdog; only Alertmanager wants firing alerts re-posted, in batches."""
    watchdog = note(labels={"alertname": "MonitorWatchdog", "severity": "none", "service": "pam-backend"})
    takes = {kind: [spec.accepts(n) for n in (note(), note("reminder"), note("flapping"), note("resolved"), watchdog)]
             for kind, spec in SINKS.items()}
    assert {"alertmanager": [True, False, True, True, True], "pagerduty": [True, True, True, True, False],
            "slack": [True, True, True, True, False], "webhook": [True, True, True, True, False]} == takes
    assert {"alertmanager": (True, 64), "pagerduty": (False, 1), "slack": (False, 1), "webhook": (False, 1)} == {
        kind: (spec.resends, spec.batch_size) for kind, spec in SINKS.items()}
