"""The outbox never loses or repeats silently: a full disk while firing or while retrying, unreadable rows, and a
state_dir deleted while running, each against real SQLite files and a real sink on 127.0.0.1.

A full disk is simulated at the store's write boundary (the SQLite error a full filesystem gives); everything
else is real: the database file, the sink server, the HTTP requests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import pytest
import structlog

from alerts import AlertEngine
from alerts.model import Notification, SinkContext
from alerts.persist.database import FILENAME, Store
from alerts.persist.mirror import Journal
from alerts.sinks.spec import SendResult, SinkSpec, host_of, post_json
from monitor.core.config import WebhookSink
from monitor.core.errors import StateDirBusyError
from tests.support.alerting import (
    REGRESSING,
    Recorder,
    fire_regression,
    heal_regression,
    make_config,
    make_engine,
    result,
    sent,
)
from tests.support.poll import until_async

CHECK = REGRESSING
KEY = f"ContractRegression/{CHECK}"


class FillableStore(Store):
    """A real Store whose write transactions fail, as on a full filesystem, while `full` is set."""

    full = False

    def _tx(self) -> Any:
        if FillableStore.full:
            raise sqlite3.OperationalError("database or disk is full")
        return super()._tx()


def engine(state: Path, url: str, registry: prometheus_client.CollectorRegistry, *, am: bool = False,
           **options: Any) -> AlertEngine:
    """An engine with a webhook sink (and an Alertmanager sink if `am`) on the recorder, fast retries of
    deliveries and of state writes, and a disk that fills when the test says."""
    sinks = [{"kind": "webhook", "url": url + "/hook", "max_attempts": 50}]
    config = make_config(state, sinks=[*sinks, {"kind": "alertmanager", "url": url + "/am"}] if am else sinks)
    return make_engine(config, registry, backoff_base=0.05, backoff_cap=0.1, flush_timeout=1.0, retry_base=0.05,
                       store_factory=lambda d: FillableStore.open(d), **options)




def hook_events(rec: Recorder) -> list[str]:
    """The `status` of every webhook request, in order."""
    return [body["status"] for body in rec.bodies("/hook")]


def metric(registry: prometheus_client.CollectorRegistry, name: str) -> float:
    """A sample without labels (0 when absent)."""
    return registry.get_sample_value(name) or 0.0


def on_disk(state: Path) -> tuple[dict[str, str], int]:
    """(alert key -> status, outbox rows) as another reader sees the database now."""
    store = Store.open(state)
    try:
        contents = store.load()
        return {k: s.status.value for k, s in contents.states.items()}, len(contents.outbox)
    finally:
        store.close()


async def test_full_disk_while_firing_pages_at_once_and_saves_when_space_returns(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """The disk is full when the alert fires: the page still goes out (from memory), the failure is counted and
    logged once at error however many retries fail, /readyz's reason and the watchdog's annotations say state is
    not saved; when space returns, the firing state is written, and a restart neither pages again nor forgets to
    resolve."""
    rec, url = recorder
    state = tmp_path / "state"
    registry = prometheus_client.CollectorRegistry()
    with structlog.testing.capture_logs() as logs:
        async with engine(state, url, registry, am=True) as e:
            assert (1.0, 0.0) == (metric(registry, "pam_monitor_state_healthy"),
                                  metric(registry, "pam_monitor_state_write_failures_total"))
            FillableStore.full = True
            try:
                fire_regression(e)
                await until_async(lambda: hook_events(rec) == ["firing"], what="the page, sent from memory")
                await until_async(lambda: metric(registry, "pam_monitor_state_write_failures_total") >= 3,
                                  what="several retries")
                assert 0.0 == metric(registry, "pam_monitor_state_healthy")
                problem = e.state_problem()
                assert problem is not None
                assert "not being saved" in problem
                assert "disk is full" in problem
                await until_async(lambda: any("not being saved" in a["annotations"].get("alert_state", "")
                                              for body in rec.bodies("/am/api/v2/alerts") for a in body
                                              if a["labels"]["alertname"] == "MonitorWatchdog"),
                                  what="the watchdog saying state is not saved")
                assert ({}, 0) == on_disk(state)  # nothing could be written
            finally:
                FillableStore.full = False
            await until_async(lambda: metric(registry, "pam_monitor_state_healthy") == 1.0, what="recovery")
            assert e.state_problem() is None
            assert ({KEY: "firing"}, 0) == on_disk(state)
    failed = [entry for entry in logs if entry["event"] == "alerts.state_write_failed"]
    assert ["error"] == [entry["log_level"] for entry in failed]
    assert 1 == sum(1 for entry in logs if entry["event"] == "alerts.state_write_recovered")

    registry = prometheus_client.CollectorRegistry()
    async with engine(state, url, registry) as e:
        e.observe(result(CHECK, "server_error", status=500))
        heal_regression(e)
        await until_async(lambda: hook_events(rec) == ["firing", "resolved"], what="one resolve after restart")


async def test_a_resolve_never_precedes_its_firing_while_the_disk_is_full(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Fired and healed while nothing can be written, with the sink refusing at first: the sink gets the firing,
    then the resolve, in that order (the firing retried until accepted); once space returns the disk holds the
    resolved state and no row."""
    rec, url = recorder
    rec.script = [503, 503]
    state = tmp_path / "state"
    registry = prometheus_client.CollectorRegistry()
    async with engine(state, url, registry) as e:
        FillableStore.full = True
        try:
            fire_regression(e)
            heal_regression(e)
            await until_async(lambda: sent(registry, "webhook") == 2.0)
        finally:
            FillableStore.full = False
        await until_async(lambda: metric(registry, "pam_monitor_state_healthy") == 1.0)
        assert ["firing", "firing", "firing", "resolved"] == hook_events(rec)
    assert ({KEY: "inactive"}, 0) == on_disk(state)  # kept for flap detection; nothing left to send


async def test_a_delivered_row_that_cannot_be_deleted_is_not_sent_again(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """The sink fails twice; the disk fills while the page is being retried; the third attempt is accepted and
    its row cannot be deleted: the sink gets the page three times in all (two refused, one accepted), never a
    fourth, while the deletion is retried; once space returns the row is gone from disk too."""
    rec, url = recorder
    rec.script = [500, 500]
    state = tmp_path / "state"
    registry = prometheus_client.CollectorRegistry()
    async with engine(state, url, registry) as e:
        fire_regression(e)
        await until_async(lambda: len(rec.bodies("/hook")) >= 1, what="the first, refused attempt")
        FillableStore.full = True
        try:
            await until_async(lambda: sent(registry, "webhook") == 1.0, what="the accepted attempt")
            failures = metric(registry, "pam_monitor_state_write_failures_total")
            await until_async(lambda: metric(registry, "pam_monitor_state_write_failures_total") >= failures + 5,
                              what="five more failed writes")
            assert ["firing"] * 3 == hook_events(rec)
            assert 0 == e.stats().queued
        finally:
            FillableStore.full = False
        await until_async(lambda: metric(registry, "pam_monitor_state_healthy") == 1.0)
        assert ({KEY: "firing"}, 0) == on_disk(state)
        assert ["firing"] * 3 == hook_events(rec)


def plant_rows(state: Path) -> None:
    """Write, as another program could, four outbox rows for the webhook lane: good, bad JSON, wrong types, good."""
    Store.open(state).close()
    good = ('{"key": "k%d", "event": "firing", "labels": {"alertname": "Good%d"}, "annotations": {}, '
            '"starts_at": 1767225600.0, "at": 1767225600.0, "ends_at": null}')
    wrong = ('{"key": "k9", "event": "firing", "labels": {"alertname": "Typed", "n": 7}, "annotations": [], '
             '"starts_at": "soon", "at": 1.0}')
    db = sqlite3.connect(state / FILENAME)
    db.executemany("INSERT INTO outbox (lane, body, attempts, next_attempt_at, created_at) VALUES (?, ?, 0, 0, 0)",
                   [("webhook#0", good % (1, 1)), ("webhook#0", "{not json"), ("webhook#0", wrong),
                    ("webhook#0", good % (2, 2))])
    db.commit()
    db.close()


async def test_unreadable_outbox_rows_are_quarantined_and_the_lane_carries_on(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """Rows with bad JSON or wrong types are moved to the quarantine table, logged once each at error with their
    row id and sink, and counted; the good rows around them are delivered, in order."""
    rec, url = recorder
    state = tmp_path / "state"
    plant_rows(state)
    registry = prometheus_client.CollectorRegistry()
    with structlog.testing.capture_logs() as logs:
        async with engine(state, url, registry):
            await until_async(lambda: sent(registry, "webhook") == 2.0)
    assert [["Good1"], ["Good2"]] == [[a["labels"]["alertname"] for a in b["alerts"]] for b in rec.bodies("/hook")]
    quarantined = [entry for entry in logs if entry["event"] == "outbox.quarantined"]
    assert [("2", "webhook", "error"), ("3", "webhook", "error")] == [
        (entry["row"], entry["sink"], entry["log_level"]) for entry in quarantined]
    assert "Typed" == quarantined[1]["alert"]
    assert 2.0 == metric(registry, "pam_monitor_outbox_quarantined_total")
    assert not any(entry["event"] == "notification.lane_error" for entry in logs)
    db = sqlite3.connect(state / FILENAME)
    try:
        assert [("outbox", "2"), ("outbox", "3")] == db.execute("SELECT source, ref FROM quarantine").fetchall()
        assert 0 == db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        db.close()


async def test_state_dir_deleted_while_running_is_recreated(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """state_dir removed while an alert fires: noticed within the check period with one error log, recreated, the
    firing state written again; after a restart the next bad result pages nobody and the heal resolves once."""
    rec, url = recorder
    state = tmp_path / "state"
    registry = prometheus_client.CollectorRegistry()
    with structlog.testing.capture_logs() as logs:
        async with engine(state, url, registry, check_every=0.1) as e:
            fire_regression(e)
            await until_async(lambda: hook_events(rec) == ["firing"])
            shutil.rmtree(state)
            await until_async(lambda: (state / FILENAME).exists() and on_disk(state) == ({KEY: "firing"}, 0),
                              what="state_dir recreated with the firing state")
    assert ["error"] == [entry["log_level"] for entry in logs if entry["event"] == "alerts.state_dir_vanished"]

    async with engine(state, url, prometheus_client.CollectorRegistry()) as e:
        e.observe(result(CHECK, "server_error", status=500))
        e.observe(result(CHECK, "server_error", status=500))
        heal_regression(e)
        await until_async(lambda: hook_events(rec) == ["firing", "resolved"])


async def test_state_dir_deleted_then_written_recreates_at_that_write(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """With no periodic check due, the next write notices the deletion itself: the alert fired after the
    deletion is on disk in the recreated directory."""
    rec, url = recorder
    state = tmp_path / "state"
    async with engine(state, url, prometheus_client.CollectorRegistry(), check_every=3600) as e:
        shutil.rmtree(state)
        fire_regression(e)
        assert {KEY: "firing"} == on_disk(state)[0]
        await until_async(lambda: hook_events(rec) == ["firing"])


class ChokingHook:
    """A webhook spec, batches of three, whose code raises on any EndpointDown notification (a row it cannot
    turn into a request)."""

    kind = "webhook"
    batch_size = 3
    resends = False
    honours_inhibition = False

    def lanes(self, sink: WebhookSink) -> Sequence[str]:
        """One lane."""
        return [host_of(sink.url.get_secret_value())]

    def accepts(self, notification: Notification) -> bool:
        """Everything but the watchdog."""
        return notification.alertname != "MonitorWatchdog"

    def build_payload(self, sink: WebhookSink, notifications: Sequence[Notification], *, ctx: SinkContext,
                      now: float) -> Any:
        """The alertnames of the batch; raises on EndpointDown."""
        if any(n.alertname == "EndpointDown" for n in notifications):
            raise ValueError("cannot render this one")
        return [n.alertname for n in notifications]

    async def send(self, client: httpx.AsyncClient, sink: WebhookSink, notifications: Sequence[Notification], *,
                   ctx: SinkContext, now: float, lane: int) -> SendResult:
        """Post the payload."""
        return await post_json(client, sink.url.get_secret_value(), self.build_payload(sink, notifications, ctx=ctx,
                                                                                        now=now))


async def test_a_row_the_sink_cannot_send_is_quarantined_and_the_others_go(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A batch whose sending raises is split; the one row that raises on its own is retried, then quarantined
    after three attempts (logged with its alert and sink, counted, kept in the quarantine table), and the row
    beside it is delivered."""
    spec: SinkSpec[WebhookSink] = ChokingHook()
    rec, url = recorder
    registry = prometheus_client.CollectorRegistry()
    config = make_config(tmp_path / "state", sinks=[{"kind": "webhook", "url": url + "/hook"}])
    with structlog.testing.capture_logs() as logs:
        async with make_engine(config, registry, sinks={"webhook": spec}, backoff_base=0.02, backoff_cap=0.1,
                               flush_timeout=1.0) as e:
            e.observe(result("backend_health", "ok", status=200))
            e.observe(result("backend_health", "server_error", status=500))
            e.observe(result("backend_health", "server_error", status=500))  # ContractRegression and EndpointDown
            await until_async(lambda: sent(registry, "webhook") == 1.0
                              and metric(registry, "pam_monitor_outbox_quarantined_total") == 1.0)
            assert 0 == e.stats().queued
    assert [["ContractRegression"]] == rec.bodies("/hook")
    assert 2 == sum(1 for entry in logs if entry["event"] == "notification.send_error")
    quarantined = [entry for entry in logs if entry["event"] == "outbox.quarantined"]
    assert [("EndpointDown", "webhook", "error")] == [(q["alert"], q["sink"], q["log_level"]) for q in quarantined]
    db = sqlite3.connect(tmp_path / "state" / FILENAME)
    try:
        assert [("outbox", "webhook could not send it: ValueError")] == db.execute(
            "SELECT source, reason FROM quarantine").fetchall()
    finally:
        db.close()


def test_a_second_journal_on_the_same_state_dir_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    """Two journals on one state_dir: the second open raises StateDirBusyError naming this process's pid and the
    state_dir (flock locks are per open file, so this holds within one process too); after the first closes, the
    second opens."""
    def journal() -> Journal:
        return Journal(tmp_path / "state", store_factory=Store.open, registry=prometheus_client.CollectorRegistry(),
                       clock=lambda: 0.0)

    first, second = journal(), journal()
    first.open()
    try:
        with pytest.raises(StateDirBusyError) as busy:
            second.open()
        assert f"pid {os.getpid()}" in str(busy.value)
        assert str(tmp_path / "state") in str(busy.value)
    finally:
        asyncio.run(first.aclose())
    second.open()
    asyncio.run(second.aclose())
