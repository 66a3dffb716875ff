"""The engine's bookkeeping: a healthy result writes nothing, gauges and queue depth stay exact, reload re-plans."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import prometheus_client

from alerts import AlertEngine
from alerts.persist.database import Store
from monitor.core.kinds import KindRules
from tests.support.alerting import CHECKS, Recorder, make_config, make_engine, queue_depth, result, sent, target_alerts
from tests.support.clock import T0, FakeClock
from tests.support.poll import until_async
from tests.support.servers import free_port, serve_asgi

HTTP = "backend_health"
OK: dict[str, dict[str, Any]] = {
    "backend_health": {"status": 200},
    "settings_get_unauth": {"status": 403},
    "voice_health": {"status": 200},
    "db_roundtrip": {"tables": {"user_settings": True, "wishlists": True}},
    "rest_tables": {"status": 200, "tables": {"user_settings": True}},
}


def healthy(name: str, at: float = T0) -> Any:
    """A passing result of check `name`, as its probe would report it."""
    return result(name, "ok", at=at, **OK[name])


def firing(registry: prometheus_client.CollectorRegistry, alertname: str, severity: str) -> float | None:
    """One series of pam_monitor_alerts_firing."""
    return registry.get_sample_value("pam_monitor_alerts_firing", {"alertname": alertname, "severity": severity})


depth = queue_depth


def outbox_rows(state_dir: Path) -> int:
    """Rows in the outbox, read through a second connection (what is really on disk)."""
    store = Store.open(state_dir)
    try:
        return store.depth()
    finally:
        store.close()


def writes(engine: AlertEngine) -> tuple[int, int]:
    """The engine's SQLite write transactions and changed rows so far."""
    stats = engine.stats()
    return stats.store_writes, stats.store_changes


def with_check(name: str, **changes: Any) -> list[dict[str, Any]]:
    """The factory's checks with `changes` applied to check `name`."""
    checks = copy.deepcopy(CHECKS)
    for check in checks:
        if check["name"] == name:
            check.update(changes)
    return checks


async def test_healthy_results_write_nothing(tmp_path: Path) -> None:
    """Once each check's first good answer is remembered, passing results open no SQLite transaction, change no
    row and leave the firing series alone."""
    registry = prometheus_client.CollectorRegistry()
    clock = FakeClock()
    async with make_engine(make_config(tmp_path), registry, clock) as e:
        for name in OK:
            e.observe(healthy(name))
        before = writes(e)
        for _ in range(20):
            clock.advance(1.0)
            for name in OK:
                e.observe(healthy(name, at=clock.now))
        assert before == writes(e)
        assert [] == target_alerts(e)
        assert 0.0 == firing(registry, "ContractRegression", "critical")


async def test_first_good_result_is_remembered_once(tmp_path: Path) -> None:
    """The `from` side of a later regression is written once per change of the good answer, not per result."""
    clock = FakeClock()
    async with make_engine(make_config(tmp_path), prometheus_client.CollectorRegistry(), clock) as e:
        before = e.stats().store_writes
        e.observe(healthy(HTTP))
        e.observe(healthy(HTTP))
        assert before + 1 == e.stats().store_writes
        e.observe(result(HTTP, "ok", status=204))  # a different good answer: remembered again
        assert before + 2 == e.stats().store_writes


async def test_firing_gauge_follows_fire_and_resolve_and_restart(tmp_path: Path) -> None:
    """pam_monitor_alerts_firing counts firing (not pending) alerts per alertname and severity through fire,
    resolve and a restart on the same state_dir; the watchdog's series stays 1 throughout."""
    registry = prometheus_client.CollectorRegistry()
    clock = FakeClock()
    config = make_config(tmp_path)
    async with make_engine(config, registry, clock) as e:
        assert 1.0 == firing(registry, "MonitorWatchdog", "none")
        e.observe(healthy(HTTP))  # answered as expected once: a 5xx now is a regression
        e.observe(healthy("settings_get_unauth"))
        e.observe(result(HTTP, "server_error", status=500))
        assert (0.0, 0.0) == (firing(registry, "ContractRegression", "critical"),
                              firing(registry, "EndpointDown", "critical"))
        e.observe(result(HTTP, "server_error", status=500, confirmation=True))
        e.observe(result("voice_health", "slow", status=200))
        e.observe(result("voice_health", "slow", status=200))
        assert (1.0, 1.0, 1.0) == (firing(registry, "ContractRegression", "critical"),
                                   firing(registry, "EndpointDown", "critical"),
                                   firing(registry, "VoiceDegraded", "warning"))
        e.observe(result("settings_get_unauth", "server_error", status=500))
        e.observe(result("settings_get_unauth", "server_error", status=500))
        assert 2.0 == firing(registry, "ContractRegression", "critical")
        e.observe(healthy(HTTP))
        e.observe(healthy(HTTP))
        assert (1.0, 0.0, 1.0, 1.0) == (firing(registry, "ContractRegression", "critical"),
                                        firing(registry, "EndpointDown", "critical"),
                                        firing(registry, "VoiceDegraded", "warning"),
                                        firing(registry, "MonitorWatchdog", "none"))
    again = prometheus_client.CollectorRegistry()
    async with make_engine(config, again, clock) as e:
        assert (1.0, 0.0, 1.0) == (firing(again, "ContractRegression", "critical"),
                                   firing(again, "EndpointDown", "critical"),
                                   firing(again, "VoiceDegraded", "warning"))
        e.observe(healthy("voice_health"))
        e.observe(healthy("voice_health"))
        assert 0.0 == firing(again, "VoiceDegraded", "warning")


async def test_watchdog_series_is_zero_when_the_watchdog_is_off(tmp_path: Path) -> None:
    """alerts.watchdog false: the MonitorWatchdog series reads 0 at start and after results."""
    registry = prometheus_client.CollectorRegistry()
    async with make_engine(make_config(tmp_path, alerts={"watchdog": False}), registry, FakeClock()) as e:
        assert 0.0 == firing(registry, "MonitorWatchdog", "none")
        e.observe(healthy(HTTP))
        assert 0.0 == firing(registry, "MonitorWatchdog", "none")


async def test_queue_depth_is_the_outbox_through_enqueue_restart(tmp_path: Path) -> None:
    """A sink that is down: the depth gauge equals the rows on disk after firing, after healing, and in a new
    engine started on the same state_dir."""
    state = tmp_path / "state"
    dead = {"kind": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook", "max_attempts": 100}
    config = make_config(state, sinks=[dead])
    registry = prometheus_client.CollectorRegistry()
    clock = FakeClock()  # frozen: a failed attempt is rescheduled into a future that never comes
    async with make_engine(config, registry, clock) as e:
        assert 0.0 == depth(registry)
        e.observe(healthy(HTTP))
        e.observe(result(HTTP, "server_error", status=500))
        e.observe(result(HTTP, "server_error", status=500, confirmation=True))
        assert (2.0, 2) == (depth(registry), outbox_rows(state))
        e.observe(healthy(HTTP))
        e.observe(healthy(HTTP))
        assert (4.0, 4) == (depth(registry), outbox_rows(state))
    again = prometheus_client.CollectorRegistry()
    async with make_engine(config, again, clock) as e:
        assert (4.0, 4) == (depth(again), outbox_rows(state))


async def test_queue_depth_counts_down_on_sent_and_failed(tmp_path: Path) -> None:
    """Two notifications: the first fails twice (max_attempts 2, given up), the second is accepted; the depth
    gauge reads 2 then 0, equal to the rows on disk each time."""
    rec = Recorder(script=[500, 500])
    state = tmp_path / "state"
    with serve_asgi(rec.app()) as url:
        registry = prometheus_client.CollectorRegistry()
        config = make_config(state, sinks=[{"kind": "webhook", "url": f"{url}/hook", "max_attempts": 2}])
        async with make_engine(config, registry, backoff_base=0.02, backoff_cap=0.1, flush_timeout=1.0) as e:
            e.observe(healthy(HTTP))
            e.observe(result(HTTP, "server_error", status=500))
            e.observe(result(HTTP, "server_error", status=500, confirmation=True))
            assert (2.0, 2) == (depth(registry), outbox_rows(state))
            await until_async(lambda: len(rec.requests) == 3)
            await until_async(lambda: depth(registry) == 0.0)
            assert 0 == outbox_rows(state)
            counted = {r: sent(registry, "webhook", r) for r in ("sent", "failed")}
            assert {"sent": 1.0, "failed": 1.0} == counted


async def test_reload_replans_checks_thresholds_and_disabling(tmp_path: Path) -> None:
    """The check lookup and policies follow reloads: a new threshold applies at once, a disabled check's results
    are ignored (its alert resolved), a check added by reload alerts."""
    registry = prometheus_client.CollectorRegistry()
    clock = FakeClock()
    only_http = [c for c in CHECKS if c["name"] == HTTP]
    async with make_engine(make_config(tmp_path, checks=only_http), registry, clock) as e:
        for _ in range(3):
            e.observe(result("voice_health", "slow", status=200))
        assert [] == target_alerts(e)  # not configured yet

        await e.reload(make_config(tmp_path, checks=with_check(HTTP, failure_threshold=3)))
        e.observe(healthy(HTTP))
        e.observe(result(HTTP, "server_error", status=500))
        e.observe(result(HTTP, "server_error", status=500))
        assert {"pending"} == {a["state"] for a in target_alerts(e)}
        e.observe(result(HTTP, "server_error", status=500))
        assert 1.0 == firing(registry, "ContractRegression", "critical")
        e.observe(result("voice_health", "slow", status=200))
        e.observe(result("voice_health", "slow", status=200))
        assert 1.0 == firing(registry, "VoiceDegraded", "warning")

        await e.reload(make_config(tmp_path, checks=with_check("voice_health", enabled=False)))
        for _ in range(3):
            e.observe(result("voice_health", "slow", status=200))
        assert ([], 0.0) == ([a for a in target_alerts(e) if a["alertname"] == "VoiceDegraded"],
                             firing(registry, "VoiceDegraded", "warning"))
        assert 1.0 == firing(registry, "ContractRegression", "critical")


async def test_table_missing_resolves_when_a_passing_run_no_longer_names_it(tmp_path: Path) -> None:
    """A db check reports `wishlists` missing twice (fires); passing runs that list no tables resolve it (the
    engine hands the check's active alert keys to the rules)."""
    registry = prometheus_client.CollectorRegistry()
    async with make_engine(make_config(tmp_path), registry, FakeClock()) as e:
        for _ in range(2):
            e.observe(result("db_roundtrip", "table_missing", details={"table": "wishlists"}))
        assert [("TableMissing", "wishlists")] == [(a["alertname"], a["labels"]["table"]) for a in target_alerts(e)]
        assert 1.0 == firing(registry, "TableMissing", "critical")
        for _ in range(2):
            e.observe(result("db_roundtrip", "ok"))
        assert ([], 0.0) == (target_alerts(e), firing(registry, "TableMissing", "critical"))


async def test_check_maintenance_window_silences_then_pages_after(tmp_path: Path) -> None:
    """A window on the check: firing inside it queues nothing; still bad after it ends, the firing is queued."""
    state = tmp_path / "state"
    dead = {"kind": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook", "max_attempts": 100}
    window = {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T00:10:00+00:00", "reason": "deploy"}
    config = make_config(state, sinks=[dead], checks=with_check(HTTP, maintenance=[window]))
    registry = prometheus_client.CollectorRegistry()
    clock = FakeClock()
    async with make_engine(config, registry, clock) as e:
        e.observe(healthy(HTTP))
        e.observe(healthy("settings_get_unauth"))
        e.observe(result(HTTP, "server_error", status=500))
        e.observe(result(HTTP, "server_error", status=500))
        assert (1.0, 0.0) == (firing(registry, "ContractRegression", "critical"), depth(registry))
        e.observe(result("settings_get_unauth", "server_error", status=500))  # no window on this check
        e.observe(result("settings_get_unauth", "server_error", status=500))
        assert 1.0 == depth(registry)
        clock.advance(601.0)
        e.observe(result(HTTP, "server_error", status=500))
        assert (3.0, 3) == (depth(registry), outbox_rows(state))  # ContractRegression and EndpointDown paged now


async def test_rules_come_from_the_map_the_engine_is_given(tmp_path: Path) -> None:
    """The engine raises, for each check kind, the alertnames of its `rules_by_kind` map and no other: with http
    mapped to EndpointDown alone (and a 5xx meaning down, as the map says, not the kind's name), a 500 on an http
    check fires EndpointDown and no ContractRegression."""
    registry = prometheus_client.CollectorRegistry()
    rules = {"http": KindRules(("EndpointDown",), server_error_is_down=True)}
    engine = AlertEngine(make_config(tmp_path), rules_by_kind=rules, registry=registry,
                         clock=FakeClock())
    async with engine as e:
        e.observe(result(HTTP, "server_error", status=500))
        e.observe(result(HTTP, "server_error", status=500))
        assert ["EndpointDown"] == [a["alertname"] for a in target_alerts(e)]
        assert (1.0, 0.0) == (firing(registry, "EndpointDown", "critical"),
                              firing(registry, "ContractRegression", "critical"))
