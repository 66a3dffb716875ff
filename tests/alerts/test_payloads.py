"""Pure payload builders, one per sink: the exact JSON each service receives."""

from __future__ import annotations

from alerts import alertmanager, pagerduty, slack, webhook
from alerts.delivery import backoff, classify, host_of
from alerts.model import Notification, SinkContext

LABELS = {"alertname": "ContractRegression", "check": "settings_get_unauth", "kind": "auth_contract",
          "severity": "critical", "service": "pam-backend", "from": "403", "to": "500"}
NOTES = {"summary": "expected 401|403, got 500 after 0.12 s", "runbook": "check the deploy"}
CTX = SinkContext(service="pam-backend", resend_interval=60.0, generator_url="http://127.0.0.1:9108/")
T = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def note(event: str = "firing") -> Notification:
    return Notification(key="ContractRegression/settings_get_unauth", event=event,  # type: ignore[arg-type]
                        labels=LABELS, annotations=NOTES, starts_at=T, at=T + 30,
                        ends_at=T + 90 if event == "resolved" else None)


def test_alertmanager_firing_ends_ahead_and_resolved_ends_at_resolution() -> None:
    """Firing: endsAt = now + 4 resend intervals; resolved: endsAt = resolve time; labels untouched."""
    body = alertmanager.build_payload([note()], ctx=CTX, now=T + 30)
    assert [{"labels": LABELS, "annotations": NOTES, "startsAt": "2026-01-01T00:00:00.000Z",
             "endsAt": "2026-01-01T00:04:30.000Z", "generatorURL": "http://127.0.0.1:9108/"}] == body
    body = alertmanager.build_payload([note("resolved")], ctx=CTX, now=T + 500)
    assert "2026-01-01T00:01:30.000Z" == body[0]["endsAt"]


def test_alertmanager_batch_keeps_last_event_per_alert() -> None:
    """A firing and its resolution in one batch post only the resolution (Alertmanager keys by labels)."""
    body = alertmanager.build_payload([note(), note("resolved")], ctx=CTX, now=T + 500)
    assert ["2026-01-01T00:01:30.000Z"] == [a["endsAt"] for a in body]


def test_pagerduty_trigger_and_resolve() -> None:
    """Trigger has payload summary/source/severity/custom_details; resolve is just key, action and dedup_key."""
    trigger = pagerduty.build_payload(note(), routing_key="R" * 32, ctx=CTX)
    assert {"routing_key", "dedup_key", "event_action", "payload", "client", "client_url"} == set(trigger)
    assert "trigger" == trigger["event_action"]
    payload = trigger["payload"]
    assert ("critical", "pam-backend/settings_get_unauth") == (payload["severity"], payload["source"])
    assert payload["summary"].endswith("expected 401|403, got 500 after 0.12 s")
    assert LABELS == payload["custom_details"]["labels"]
    resolve = pagerduty.build_payload(note("resolved"), routing_key="R" * 32, ctx=CTX)
    assert {"routing_key": "R" * 32, "dedup_key": trigger["dedup_key"], "event_action": "resolve"} == resolve


def test_pagerduty_severity_mapping_and_summary_limit() -> None:
    """Severity none maps to info; a summary longer than 1024 characters is cut."""
    long = Notification(key="k", event="firing", labels={**LABELS, "severity": "none"},
                        annotations={"summary": "x" * 5000}, starts_at=T, at=T)
    payload = pagerduty.build_payload(long, routing_key="R", ctx=CTX)["payload"]
    assert ("info", 1024) == (payload["severity"], len(payload["summary"]))


def test_slack_wording() -> None:
    """Firing and resolved read differently; the summary and labels are in the block."""
    firing = slack.build_payload(note(), ctx=CTX)
    assert firing["text"].startswith(":rotating_light: FIRING: ContractRegression on settings_get_unauth")
    assert "from=403" in firing["blocks"][0]["text"]["text"]
    resolved = slack.build_payload(note("resolved"), ctx=CTX)
    assert resolved["text"].startswith(":white_check_mark: RESOLVED: ContractRegression")


def test_webhook_shape() -> None:
    """Generic JSON: version, status, event and a list of alerts with a fingerprint."""
    body = webhook.build_payload(note("resolved"), ctx=CTX)
    assert ("1", "resolved", "resolved", "pam-backend") == (body["version"], body["status"], body["event"],
                                                            body["service"])
    assert "2026-01-01T00:01:30.000Z" == body["alerts"][0]["endsAt"]
    assert pagerduty.dedup_key(note()) == body["alerts"][0]["fingerprint"]


def test_status_classification_and_backoff_bounds() -> None:
    """2xx accepted, 408/429/5xx retried, other 4xx rejected; backoff stays within [0, min(cap, base*2^n))."""
    assert ["accepted", "retry", "retry", "retry", "rejected", "rejected"] == [
        classify(s) for s in (202, 429, 503, 408, 400, 404)]
    import random

    rng = random.Random(7)  # noqa: S311 - jitter, not cryptography
    delays = [backoff(n, base=1.0, cap=300.0, rng=rng) for n in range(1, 20)]
    assert all(0.0 <= d < min(300.0, 2.0 ** n) for n, d in zip(range(1, 20), delays, strict=True))
    assert "hooks.slack.com" == host_of("https://hooks.slack.com/services/T/B/secret")
