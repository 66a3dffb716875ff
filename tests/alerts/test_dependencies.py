"""One outage, one page: with `health_check` on the target, the engine pages direct sinks once for the root, holds
the dependents back (Alertmanager still gets them all, labelled for inhibition), releases them when they are their
own problem, and remembers what it held across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prometheus_client

from alerts import AlertEngine
from alerts.persist.database import Store
from monitor.core.clock import iso
from monitor.core.config import Config
from tests.support.alerting import Recorder, make_config, make_engine, queue_depth, result
from tests.support.clock import FakeClock
from tests.support.poll import until_async

ROOT = "backend_health"
DEPENDENTS = ("settings_get_unauth", "voice_health", "rest_tables")
HEALTHY: dict[str, dict[str, Any]] = {
    "backend_health": {"status": 200}, "settings_get_unauth": {"status": 403}, "voice_health": {"status": 200},
    "rest_tables": {"status": 200, "tables": {"user_settings": True}},
    "db_roundtrip": {"tables": {"user_settings": True, "wishlists": True}},
}


def config_for(state: Path, url: str, **alerts: Any) -> Config:
    """The factory's checks, backend_health as the backend target's health check; a webhook and an Alertmanager
    (both the recorder) as sinks."""
    targets = {"backend": {"base_url": "http://127.0.0.1:1", "health_check": ROOT},
               "database": {"dsn": "postgresql://app@127.0.0.1:1/app"}}
    sinks = [{"kind": "webhook", "url": f"{url}/hook"}, {"kind": "alertmanager", "url": f"{url}/am"}]
    return make_config(state, sinks=sinks, targets=targets,
                       alerts={"watchdog": False, "resend_interval": "1h", **alerts})


class Outage:
    """Drives an engine on a fake clock: each call is one round of results, a second apart."""

    def __init__(self, engine: AlertEngine, clock: FakeClock) -> None:
        self.engine, self.clock = engine, clock

    def run(self, *names: str, ok: bool = False) -> None:
        """One result of each named check: healthy, or connection refused."""
        self.clock.advance(1.0)
        for name in names:
            if ok:
                self.engine.observe(result(name, "ok", at=self.clock.now, **HEALTHY[name]))
            else:
                self.engine.observe(result(name, "connection_error", at=self.clock.now, message="connection refused"))


def hook(rec: Recorder) -> list[tuple[str, str, str]]:
    """What the webhook was told: (event, alertname, check) per request."""
    return [(b["event"], b["alerts"][0]["labels"]["alertname"], b["alerts"][0]["labels"]["check"])
            for b in rec.bodies("/hook")]


def alertmanager(rec: Recorder) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest posting of each (alertname, check) Alertmanager was sent."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for body in rec.bodies("/am/api/v2/alerts"):
        for alert in body:
            latest[(alert["labels"]["alertname"], alert["labels"]["check"])] = alert
    return latest


async def delivered(registry: prometheus_client.CollectorRegistry) -> None:
    """Wait until the outbox is empty: every queued notification reached its sink."""
    await until_async(lambda: queue_depth(registry) == 0.0, what="an empty outbox")


async def test_outage_pages_the_root_once_and_alertmanager_gets_everything(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Backend down, health check seen failing first: the webhook gets one firing (the root's EndpointDown, listing
    the dependents); Alertmanager gets every alert, each with `target`, the dependents with `depends_on`."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url), registry, clock) as e:
        o = Outage(e, clock)
        o.run(ROOT, *DEPENDENTS, ok=True)
        o.run(ROOT, *DEPENDENTS)
        o.run(ROOT, *DEPENDENTS)
        await delivered(registry)
        assert [("firing", "EndpointDown", ROOT)] == hook(rec)
        assert ("also failing on target backend: rest_tables (EndpointDown), settings_get_unauth (EndpointDown), "
                "voice_health (EndpointDown, VoiceDegraded)") == rec.bodies("/hook")[0]["alerts"][0]["annotations"][
                    "also_failing"]
        sent = alertmanager(rec)
        assert {("EndpointDown", ROOT), ("EndpointDown", "settings_get_unauth"), ("EndpointDown", "voice_health"),
                ("VoiceDegraded", "voice_health"), ("EndpointDown", "rest_tables")} == set(sent)
        assert {"backend"} == {a["labels"]["target"] for a in sent.values()}
        assert {ROOT: None, **dict.fromkeys(DEPENDENTS, ROOT)} == {
            a["labels"]["check"]: a["labels"].get("depends_on") for a in sent.values()}


async def test_dependent_failing_first_waits_for_the_root_then_is_held(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A dependent fires before its root is seen failing: the webhook hears nothing until the root fires, then only
    the root; past the wait bound the dependent stays held, for its root is failing."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url), registry, clock) as e:
        o = Outage(e, clock)
        o.run(ROOT, "settings_get_unauth", ok=True)
        o.run("settings_get_unauth")
        o.run("settings_get_unauth")
        await delivered(registry)
        assert ([], {("EndpointDown", "settings_get_unauth")}) == (hook(rec), set(alertmanager(rec)))
        o.run(ROOT)
        o.run(ROOT)
        await delivered(registry)
        assert [("firing", "EndpointDown", ROOT)] == hook(rec)
        clock.advance(60.0)  # past backend_health's interval + timeout
        assert 0 == e.release_due()


async def test_dependent_failing_on_its_own_is_sent_when_the_root_answers(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A dependent fires while its root has not run since: held until the root's next result; the root is fine,
    so the dependent's own problem goes to the webhook then."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url), registry, clock) as e:
        o = Outage(e, clock)
        o.run(ROOT, "settings_get_unauth", ok=True)
        o.run("settings_get_unauth")
        o.run("settings_get_unauth")
        await delivered(registry)
        assert [] == hook(rec)
        o.run(ROOT, ok=True)
        await delivered(registry)
        assert [("firing", "EndpointDown", "settings_get_unauth")] == hook(rec)


async def test_no_news_of_the_root_releases_after_its_interval_and_timeout(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """The root never reports again: the engine's hold timer sends the dependent once backend_health's interval
    plus timeout (35 s) have passed since the dependent began to fail, not before."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url), registry, clock) as e:
        o = Outage(e, clock)
        o.run(ROOT, "settings_get_unauth", ok=True)
        o.run("settings_get_unauth")
        o.run("settings_get_unauth")
        clock.advance(33.0)  # 34 s after the first failure
        assert 0 == e.release_due()
        clock.advance(1.0)  # 35 s
        await until_async(lambda: hook(rec) == [("firing", "EndpointDown", "settings_get_unauth")],
                          what="the hold timer to release the dependent")


async def test_root_recovery_releases_only_what_still_fails(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """The root recovers: a dependent still failing on its next run is paged then (and resolved later); dependents
    that recover send no resolution to the webhook, which never heard of them; Alertmanager hears of every one."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url), registry, clock) as e:
        o = Outage(e, clock)
        o.run(ROOT, *DEPENDENTS, ok=True)
        o.run(ROOT, *DEPENDENTS)
        o.run(ROOT, *DEPENDENTS)
        o.run(ROOT, ok=True)
        o.run(ROOT, ok=True)
        o.run("settings_get_unauth")
        o.run("voice_health", "rest_tables", ok=True)
        o.run("voice_health", "rest_tables", ok=True)
        await delivered(registry)
        assert [("firing", "EndpointDown", ROOT), ("resolved", "EndpointDown", ROOT),
                ("firing", "EndpointDown", "settings_get_unauth")] == hook(rec)
        o.run("settings_get_unauth", ok=True)
        o.run("settings_get_unauth", ok=True)
        await delivered(registry)
        assert ("resolved", "EndpointDown", "settings_get_unauth") == hook(rec)[-1]
        assert 4 == len(hook(rec))
        # Alertmanager's last word on every alert is a resolution: endsAt not after now (ISO strings sort by time).
        assert {} == {key: a["endsAt"] for key, a in alertmanager(rec).items() if a["endsAt"] > iso(clock.now)}
        assert [] == e.active_alerts()


async def test_a_restart_neither_pages_the_held_nor_forgets_them(recorder: tuple[Recorder, str],
                                                                tmp_path: Path) -> None:
    """Held dependents are persisted: after a restart, while the outage goes on and when it ends, the webhook hears
    only of the root (fired once, resolved once)."""
    rec, url = recorder
    clock = FakeClock()
    config = config_for(tmp_path / "state", url)
    registry = prometheus_client.CollectorRegistry()
    async with make_engine(config, registry, clock, flush_timeout=2.0) as e:
        o = Outage(e, clock)
        o.run(ROOT, *DEPENDENTS, ok=True)
        o.run(ROOT, *DEPENDENTS)
        o.run(ROOT, *DEPENDENTS)
        await delivered(registry)
    store = Store.open(tmp_path / "state")
    try:
        held = {s.check for s in store.load_states().values() if s.held}
    finally:
        store.close()
    assert set(DEPENDENTS) == held
    registry = prometheus_client.CollectorRegistry()
    async with make_engine(config, registry, clock) as e:
        o = Outage(e, clock)
        o.run(*DEPENDENTS)  # the root not seen yet since the restart: wait for it
        o.run(ROOT, *DEPENDENTS)
        clock.advance(120.0)
        assert 0 == e.release_due()
        o.run(ROOT, *DEPENDENTS, ok=True)
        o.run(ROOT, *DEPENDENTS, ok=True)
        await delivered(registry)
        assert [("firing", "EndpointDown", ROOT), ("resolved", "EndpointDown", ROOT)] == hook(rec)
        assert [] == e.active_alerts()


async def test_a_root_that_raises_no_alert_holds_nothing_back(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """backend_health fails with its alerts disabled: it will page nothing, so its dependents page themselves."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    config = config_for(tmp_path, url, rules={"EndpointDown": {"enabled": False}})
    async with make_engine(config, registry, clock) as e:
        o = Outage(e, clock)
        o.run(ROOT, "voice_health", ok=True)
        o.run(ROOT, "voice_health")
        o.run(ROOT, "voice_health")
        await delivered(registry)
        assert [("firing", "VoiceDegraded", "voice_health")] == hook(rec)
