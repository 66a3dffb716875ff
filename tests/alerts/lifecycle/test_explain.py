"""What /status says about each alert (AlertEngine.active_alerts on a fake clock): `since` is the startsAt the sinks
get, `state_since` when it entered its state, and every hold (flapping, a failing root, a maintenance window) says
why and until when; the MonitorWatchdog is listed while it is up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prometheus_client

from alerts.judge.rules import watchdog_labels
from alerts.lifecycle.explain import entry
from alerts.lifecycle.machine import AlertState, Hold, Status
from monitor.core.clock import iso
from monitor.core.config import Config
from tests.support.alerting import Recorder, make_config, make_engine, queue_depth, result, target_alerts
from tests.support.clock import T0, FakeClock
from tests.support.poll import until_async

VOICE = "voice_health"
HTTP = "backend_health"
DEPENDENT = "settings_get_unauth"
FLAPPING = "flapping: 7 state changes in 10 min; held firing until the check is steady for 10 min"


def voice(engine: Any, clock: FakeClock, pattern: str) -> None:
    """One voice_health result per letter (B: slow, so VoiceDegraded; G: ok), 30 s apart on the engine's clock."""
    for letter in pattern:
        engine.observe(result(VOICE, "slow" if letter == "B" else "ok", status=200, at=clock.now))
        clock.advance(30.0)


def named(engine: Any, alertname: str, check: str) -> dict[str, Any] | None:
    """The /status entry of one alert, or None."""
    return next((a for a in engine.active_alerts()
                 if a["alertname"] == alertname and a["labels"].get("check") == check), None)


def fields(engine: Any, alertname: str, check: str, *keys: str) -> tuple[Any, ...]:
    """Some fields of one alert's /status entry (the alert must be listed)."""
    found = named(engine, alertname, check)
    assert found is not None, engine.active_alerts()
    return tuple(found[k] for k in keys)


async def test_a_flapping_alert_says_why_and_until_when(tmp_path: Path) -> None:
    """The demo's complaint: VoiceDegraded fires and resolves three times, fires a fourth (7 changes in 10 min) and
    is held firing while every result is ok. /status says flapping, the reason and held_until (a window after the
    last raw change: after the seventh change, then after the check turned good); it resolves at held_until."""
    clock = FakeClock()
    async with make_engine(make_config(tmp_path), prometheus_client.CollectorRegistry(), clock) as e:
        voice(e, clock, "BBGGBBGGBBGGBB")  # results at T0 .. T0+390 s; the seventh change at T0+390
        labels = named(e, "VoiceDegraded", VOICE)
        assert {"alertname": "VoiceDegraded", "state": "firing", "since": iso(T0 + 360), "state_since": iso(T0 + 390),
                "flapping": True, "held_until": iso(T0 + 390 + 600), "held_reason": FLAPPING,
                "status_url": "http://127.0.0.1:9108/#check-voice_health"} \
            == {k: v for k, v in (labels or {}).items() if k != "labels"}
        voice(e, clock, "GG")  # good twice by T0+450: the condition changed again
        assert (iso(T0 + 450 + 600), FLAPPING) == fields(e, "VoiceDegraded", VOICE, "held_until", "held_reason")
        voice(e, clock, "G" * 19)  # T0+480 .. T0+1020: ok all along, still held
        assert ("firing", True) == fields(e, "VoiceDegraded", VOICE, "state", "flapping")
        voice(e, clock, "G")  # T0+1050 = held_until
        assert [] == target_alerts(e)


def dependent_config(state: Path) -> Config:
    """The factory's checks with backend_health as the backend target's health check (interval 30 s, timeout 5 s)."""
    targets = {"backend": {"base_url": "http://127.0.0.1:1", "health_check": HTTP},
               "database": {"dsn": "postgresql://app@127.0.0.1:1/app"}}
    return make_config(state, targets=targets)


def down(engine: Any, clock: FakeClock, *checks: str, ok: bool = False) -> None:
    """One round a second later: each check refused (or healthy)."""
    clock.advance(1.0)
    for check in checks:
        if ok:
            engine.observe(result(check, "ok", status=200 if check == HTTP else 403, at=clock.now))
        else:
            engine.observe(result(check, "connection_error", at=clock.now))


def hold(engine: Any, check: str) -> tuple[Any, ...]:
    """(held_until, held_reason) of a check's EndpointDown."""
    return fields(engine, "EndpointDown", check, "held_until", "held_reason")


async def test_a_dependent_held_back_says_by_which_check(tmp_path: Path) -> None:
    """Backend down: the root's EndpointDown is not held; the dependent's says its root is failing (no end known).
    The root recovers first: the dependent's own next result decides; failing still, it is sent: no hold."""
    clock = FakeClock()
    async with make_engine(dependent_config(tmp_path), prometheus_client.CollectorRegistry(), clock) as e:
        down(e, clock, HTTP, DEPENDENT, ok=True)
        down(e, clock, HTTP, DEPENDENT)
        down(e, clock, HTTP, DEPENDENT)
        assert (None, None) == hold(e, HTTP)
        assert (None, "depends on backend_health, which is failing: not sent to PagerDuty, Slack and webhooks until "
                      "it recovers (listed on its alert)") == hold(e, DEPENDENT)
        down(e, clock, HTTP, ok=True)
        assert (None, "depends on backend_health, which recovered: sent to PagerDuty, Slack and webhooks only if "
                      "this check's next result still fails (its own problem), otherwise dropped") \
            == hold(e, DEPENDENT)
        down(e, clock, DEPENDENT)
        assert (None, None) == hold(e, DEPENDENT)


async def test_a_dependent_waiting_for_its_root_says_until_when(tmp_path: Path) -> None:
    """The dependent fails while its root has not run since: held until the root's next result, at the latest the
    root's interval + timeout (35 s) after the dependent's first failure: held_until says that moment."""
    clock = FakeClock()
    async with make_engine(dependent_config(tmp_path), prometheus_client.CollectorRegistry(), clock) as e:
        down(e, clock, HTTP, DEPENDENT, ok=True)
        down(e, clock, DEPENDENT)  # T0+2: the first failure
        down(e, clock, DEPENDENT)
        assert (iso(T0 + 2 + 35), "depends on backend_health, not seen since this check began to fail: not sent to "
                                  "PagerDuty, Slack and webhooks until its next result, or once it has had the time "
                                  "to run") == hold(e, DEPENDENT)
        clock.advance(35.0)
        assert 1 == e.release_due()
        assert (None, None) == hold(e, DEPENDENT)


async def test_a_maintenance_window_says_until_it_ends(tmp_path: Path) -> None:
    """Firing inside the check's window: the entry says the window's reason and its end; after it, no hold."""
    window = {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T00:10:00+00:00", "reason": "deploy"}
    checks = [{"name": HTTP, "kind": "http", "target": "backend", "path": "/health", "maintenance": [window]}]
    clock = FakeClock()
    async with make_engine(make_config(tmp_path, checks=checks), prometheus_client.CollectorRegistry(), clock) as e:
        down(e, clock, HTTP)
        down(e, clock, HTTP)
        assert ("2026-01-01T00:10:00.000Z", "maintenance window (deploy): notifications silenced until it ends") \
            == hold(e, HTTP)
        clock.advance(600.0)
        down(e, clock, HTTP)
        assert (None, None) == hold(e, HTTP)


def test_holds_join_and_the_latest_end_wins() -> None:
    """Several holds: reasons joined by "; ", held_until the latest end, unknown (null) if one end is unknown; a
    pending alert's since and state_since are the same moment."""
    state = AlertState("k", "EndpointDown", HTTP, status=Status.FIRING, since=T0 + 30, started_at=T0)
    assert (iso(T0), iso(T0 + 30), iso(T0 + 600), "a; b") == tuple(
        entry(state, [Hold(T0 + 60, "a"), Hold(T0 + 600, "b")])[k]
        for k in ("since", "state_since", "held_until", "held_reason"))
    assert (None, "a; b") == tuple(entry(state, [Hold(T0 + 60, "a"), Hold(None, "b")])[k]
                                   for k in ("held_until", "held_reason"))
    pending = AlertState("k", "EndpointDown", HTTP, status=Status.PENDING, since=T0, started_at=T0)
    assert (iso(T0), iso(T0), False, None, None) == tuple(
        entry(pending)[k] for k in ("since", "state_since", "flapping", "held_until", "held_reason"))


async def test_the_watchdog_is_listed_while_it_is_up(tmp_path: Path) -> None:
    """MonitorWatchdog is listed firing, with its labels (its configured severity) and since = the engine's start,
    while results keep arriving; past its grace (3 x resend_interval here) it is not; a result brings it back with
    the same since; `watchdog: false` never lists it."""
    clock = FakeClock()
    config = make_config(tmp_path, alerts={"rules": {"MonitorWatchdog": {"severity": "info"}}})
    async with make_engine(config, prometheus_client.CollectorRegistry(), clock) as e:
        clock.advance(5.0)
        expected = {"alertname": "MonitorWatchdog", "state": "firing", "labels": watchdog_labels(config),
                    "since": iso(T0), "state_since": iso(T0), "flapping": False, "held_until": None,
                    "held_reason": None}
        assert "info" == watchdog_labels(config)["severity"]
        assert [expected] == e.active_alerts()
        clock.advance(181.0)
        assert [] == e.active_alerts()
        e.observe(result(HTTP, "ok", status=200, at=clock.now))
        assert [expected] == e.active_alerts()
    async with make_engine(make_config(tmp_path, alerts={"watchdog": False}), prometheus_client.CollectorRegistry(),
                           FakeClock()) as e:
        assert [] == e.active_alerts()


async def test_since_is_the_startsat_every_sink_gets(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A 500 at T0+1 (pending) confirmed at T0+3 (firing): the webhook's and Alertmanager's startsAt are /status
    `since` (T0+1, the same string); `state_since` is when it fired (T0+3)."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    sinks = [{"kind": "webhook", "url": f"{url}/hook"}, {"kind": "alertmanager", "url": f"{url}/am"}]
    checks = [{"name": HTTP, "kind": "http", "target": "backend", "path": "/health"}]
    async with make_engine(make_config(tmp_path, sinks=sinks, checks=checks), registry, clock) as e:
        for step in (1.0, 2.0):
            clock.advance(step)
            e.observe(result(HTTP, "connection_error", at=clock.now))
        await until_async(lambda: queue_depth(registry) == 0.0, what="an empty outbox")
        listed = named(e, "EndpointDown", HTTP)
        assert listed is not None
        webhook = rec.bodies("/hook")[0]["alerts"][0]
        alertmanager = next(a for body in rec.bodies("/am/api/v2/alerts") for a in body
                            if a["labels"]["alertname"] == "EndpointDown")
        assert (iso(T0 + 1), iso(T0 + 1), iso(T0 + 1), iso(T0 + 3)) == (
            listed["since"], webhook["startsAt"], alertmanager["startsAt"], listed["state_since"])
