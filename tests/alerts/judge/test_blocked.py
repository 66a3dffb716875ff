"""MonitorBlocked{target}: one critical page when the target refuses pam-monitor itself, its other alerts held
behind it (Alertmanager still gets them, labelled), released when it ends; one stray foreign refusal pages nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prometheus_client

from alerts import AlertEngine
from alerts.judge.blocked import Tracker, judge
from alerts.model import Signal
from monitor.core.config import Config
from tests.support.alerting import Recorder, make_config, make_engine, queue_depth, result
from tests.support.clock import FakeClock
from tests.support.poll import until_async

BLOCKED = {"shape": "403 application/json keys=[message]", "blocked": True,
           "excerpt": '{"message": "Your IP address has been blocked due to security violations"}'}
WAF = {"shape": "403 text/html", "blocked": False, "excerpt": "<html>Forbidden</html>"}
CHECKS = ("backend_health", "settings_get_unauth", "voice_health")


def config_for(state: Path, url: str, *, health: bool = True) -> Config:
    """The factory's checks; backend_health as the backend's health check (or none); a webhook (direct) and an
    Alertmanager (inhibits on its own), both the recorder."""
    backend: dict[str, Any] = {"base_url": "http://127.0.0.1:1"}
    if health:
        backend["health_check"] = "backend_health"
    sinks = [{"kind": "webhook", "url": f"{url}/hook"}, {"kind": "alertmanager", "url": f"{url}/am"}]
    return make_config(state, sinks=sinks, targets={"backend": backend,
                                                    "database": {"dsn": "postgresql://app@127.0.0.1:1/app"}},
                       alerts={"watchdog": False, "resend_interval": "1h"})


def walled(engine: AlertEngine, clock: FakeClock, record: dict[str, Any], checks: tuple[str, ...] = CHECKS) -> None:
    """One round: each check refused by the wall (invalid_response carrying `record` as foreign_refusal)."""
    clock.advance(1.0)
    for name in checks:
        engine.observe(result(name, "invalid_response", status=403, at=clock.now, message=f"{name}: refused",
                              details={"foreign_refusal": record}))


def healthy(engine: AlertEngine, clock: FakeClock) -> None:
    """One round of good answers from every check of the wall's target."""
    clock.advance(1.0)
    status = {"backend_health": 200, "settings_get_unauth": 403, "voice_health": 200}
    for name in CHECKS:
        engine.observe(result(name, "ok", status=status[name], at=clock.now))


def hook(rec: Recorder) -> list[tuple[str, str, str]]:
    """(event, alertname, check or target) of every webhook request."""
    out = []
    for body in rec.bodies("/hook"):
        labels = body["alerts"][0]["labels"]
        out.append((body["event"], labels["alertname"], labels.get("check", labels["target"])))
    return out


async def delivered(registry: prometheus_client.CollectorRegistry) -> None:
    """Every queued notification reached its sink."""
    await until_async(lambda: queue_depth(registry) == 0.0, what="an empty outbox")


async def test_ip_block_pages_once_for_the_target_and_holds_the_rest(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Every check of the target gets the blocker's JSON 403: the webhook gets exactly one page, MonitorBlocked for
    the target, quoting the excerpt and saying every check is blind; the checks' own alerts go only to Alertmanager
    (labelled target=backend). Healed, MonitorBlocked resolves and the held alerts never reach the webhook."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url), registry, clock) as engine:
        healthy(engine, clock)
        for _ in range(3):
            walled(engine, clock, BLOCKED)
        await delivered(registry)
        assert [("firing", "MonitorBlocked", "backend")] == hook(rec)
        page = rec.bodies("/hook")[0]["alerts"][0]
        assert "Your IP address has been blocked due to security violations" in page["annotations"]["summary"]
        assert "every check of this target is blind until this clears" in page["annotations"]["summary"]
        assert ("critical", "backend") == (page["labels"]["severity"], page["labels"]["target"])
        firing = {a["labels"]["alertname"] for a in engine.active_alerts() if a["state"] == "firing"}
        assert {"MonitorBlocked", "CheckFailed"} <= firing
        held = {a["labels"]["check"]: a["held_reason"] for a in engine.active_alerts()
                if a["alertname"] == "CheckFailed"}
        assert {"target backend refuses pam-monitor itself (MonitorBlocked): not sent to PagerDuty, Slack and "
                "webhooks until that ends"} == set(held.values()), held
        sent = {(a["labels"]["alertname"], a["labels"].get("check", "")) for b in rec.bodies("/am/api/v2/alerts")
                for a in b}
        assert {("CheckFailed", "backend_health"), ("CheckFailed", "settings_get_unauth"),
                ("VoiceDegraded", "voice_health"), ("MonitorBlocked", "")} <= sent
        for _ in range(3):
            healthy(engine, clock)
        await delivered(registry)
        assert [("firing", "MonitorBlocked", "backend"), ("resolved", "MonitorBlocked", "backend")] == hook(rec)
        assert [] == [a for a in engine.active_alerts() if a["state"] == "firing"]


async def test_same_foreign_shape_on_two_checks_without_a_health_check(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """No health check, no block marker: a WAF's HTML 403 on two checks of the target fires MonitorBlocked once;
    the checks' own alerts are held behind it (the webhook hears only MonitorBlocked)."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url, health=False), registry, clock) as engine:
        for _ in range(3):
            walled(engine, clock, WAF, ("settings_get_unauth", "voice_health"))
        await delivered(registry)
        assert [("firing", "MonitorBlocked", "backend")] == hook(rec)


async def test_one_stray_foreign_refusal_pages_nothing_of_its_own(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A single check with a foreign shape (not blocked, not the health check) is that check's CheckFailed, sent
    directly as usual; no MonitorBlocked."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url, health=False), registry, clock) as engine:
        for _ in range(3):
            walled(engine, clock, WAF, ("settings_get_unauth",))
        await delivered(registry)
        assert [("firing", "CheckFailed", "settings_get_unauth")] == hook(rec)


async def test_monitor_blocked_survives_a_restart(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Firing, then the daemon restarts: the alert is kept (not resolved as an orphan: its target still exists)
    and the webhook is not paged again."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    config = config_for(tmp_path, url)
    async with make_engine(config, registry, clock) as engine:
        for _ in range(3):
            walled(engine, clock, BLOCKED)
        await delivered(registry)
    registry = prometheus_client.CollectorRegistry()
    async with make_engine(config, registry, clock) as engine:
        walled(engine, clock, BLOCKED)
        await delivered(registry)
        assert ["MonitorBlocked"] == [a["alertname"] for a in engine.active_alerts()
                                      if a["alertname"] == "MonitorBlocked"]
    assert [("firing", "MonitorBlocked", "backend")] == hook(rec)


def test_judgement_rows() -> None:
    """The rule's rows: a blocked health check alone is enough; two blocked checks are; a shared foreign shape
    needs the health check among them when there is one; nothing shown is GOOD; one stray says nothing."""
    config = make_config(targets={"backend": {"base_url": "http://x", "health_check": "backend_health"},
                                  "database": {"dsn": "postgresql://a@127.0.0.1:1/a"}})

    def signal(per: dict[str, Any]) -> Signal | None:
        obs = judge(config, "backend", per)
        return obs.signal if obs is not None else None

    assert Signal.BAD == signal({"backend_health": BLOCKED})
    assert Signal.BAD == signal({"settings_get_unauth": BLOCKED, "voice_health": BLOCKED})
    assert signal({"settings_get_unauth": WAF, "voice_health": WAF}) is None
    assert Signal.BAD == signal({"backend_health": WAF, "voice_health": WAF})
    assert signal({"voice_health": BLOCKED}) is None
    assert Signal.GOOD == signal({})
    tracker = Tracker()
    assert tracker.observe(config, config.checks[2], result("voice_health", "rate_limited", status=429)) is None


async def test_what_still_fails_after_the_wall_is_released(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """The wall comes down but one check still fails on its own (no foreign refusal now): when MonitorBlocked
    resolves, that check's held alert goes to the webhook; the healed ones never do."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url), registry, clock) as engine:
        for _ in range(3):
            walled(engine, clock, BLOCKED)
        for _ in range(3):
            clock.advance(1.0)
            engine.observe(result("backend_health", "ok", status=200, at=clock.now))
            engine.observe(result("settings_get_unauth", "invalid_response", status=403, at=clock.now))
            engine.observe(result("voice_health", "ok", status=200, at=clock.now))
        await delivered(registry)
        assert [("firing", "MonitorBlocked", "backend"), ("resolved", "MonitorBlocked", "backend"),
                ("firing", "CheckFailed", "settings_get_unauth")] == hook(rec)
