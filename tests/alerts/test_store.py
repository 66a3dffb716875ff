"""Durability: state and outbox survive kill -9; on restart nothing is re-paged and nothing is forgotten."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import prometheus_client

from alerts import AlertEngine
from alerts.machine import Status
from alerts.store import Store
from monitor.core.clock import SystemClock
from tests.alerts.factory import make_config, result
from tests.alerts.test_delivery import CHECK, Recorder, until
from tests.support.servers import free_port, serve_asgi

ROOT = Path(__file__).resolve().parents[2]
_KILLED = """
import asyncio, os, signal, sys
from pathlib import Path
import prometheus_client
from alerts import AlertEngine
from monitor.core.clock import SystemClock
from tests.alerts.factory import make_config, result

async def main():
    config = make_config(Path(sys.argv[1]), sinks=[{"kind": "webhook", "url": sys.argv[2]}])
    engine = AlertEngine(config, registry=prometheus_client.CollectorRegistry(), clock=SystemClock())
    await engine.start()
    for r in (result("settings_get_unauth", "ok", status=403),
              result("settings_get_unauth", "server_error", status=500),
              result("settings_get_unauth", "server_error", status=500, confirmation=True)):
        engine.observe(r)
    await asyncio.sleep(0.3)  # let a delivery attempt fail against the closed port
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_store_round_trip_after_unclean_close(tmp_path: Path) -> None:
    """Rows committed and never deleted are there after reopening without a clean shutdown."""
    from alerts.model import Notification

    store = Store.open(tmp_path / "state")
    note = Notification(key="k", event="firing", labels={"alertname": "X"}, annotations={}, starts_at=1.0, at=2.0)
    store.commit(enqueue=[("webhook", note)], now=2.0)
    # No close(): the connection object is simply abandoned, as in a crash.
    again = Store.open(tmp_path / "state")
    assert [note] == [row.notification for row in again.head("webhook", 10)]
    again.close()
    store.close()


async def test_kill_9_while_firing_then_restart(tmp_path: Path) -> None:
    """A process fires, its sink is down, it is killed -9. A new engine delivers the queued firing once,
    does not page again on the next bad result, and resolves when the check heals."""
    state = tmp_path / "state"
    dead = f"http://127.0.0.1:{free_port()}/hook"
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", textwrap.dedent(_KILLED), str(state), dead],
        cwd=ROOT, capture_output=True, timeout=60, check=False,
    )
    assert -9 == proc.returncode, proc.stderr.decode()[-2000:]
    leftover = Store.open(state)
    persisted = leftover.load_states()
    assert Status.FIRING == persisted[f"ContractRegression/{CHECK}"].status
    assert 1 == leftover.depth()
    leftover.close()

    rec = Recorder()
    with serve_asgi(rec.app()) as url:
        registry = prometheus_client.CollectorRegistry()
        config = make_config(state, sinks=[{"kind": "webhook", "url": f"{url}/hook"}])
        engine = AlertEngine(config, registry=registry, clock=SystemClock(), backoff_base=0.02, backoff_cap=0.2)
        await engine.start()
        try:
            await until(lambda: len(rec.requests) == 1)
            engine.observe(result(CHECK, "server_error", status=500))
            engine.observe(result(CHECK, "server_error", status=500))
            assert 0.0 == registry.get_sample_value("pam_monitor_notification_queue_depth")
            engine.observe(result(CHECK, "ok", status=403))
            engine.observe(result(CHECK, "ok", status=403))
            await until(lambda: len(rec.requests) == 2)
            assert ["firing", "resolved"] == [r["json"]["status"] for r in rec.requests]
        finally:
            await engine.aclose(1.0)


def test_nothing_to_write_opens_no_transaction(tmp_path: Path) -> None:
    """commit() and forget_checks() with nothing in them leave the write counter alone; a real write moves it."""
    from alerts.model import Notification

    store = Store.open(tmp_path / "state")
    try:
        store.commit(now=1.0)
        store.commit(states=[], delete_states=[], memory=[], enqueue=[], now=1.0)
        store.forget_checks([])
        assert (0, 0) == (store.writes, store.changes)
        note = Notification(key="k", event="firing", labels={"alertname": "X"}, annotations={}, starts_at=1.0, at=2.0)
        store.commit(enqueue=[("webhook", note), ("slack", note)], now=2.0)
        assert (1, 2) == (store.writes, store.changes)
    finally:
        store.close()


def test_delete_returns_the_rows_it_removed(tmp_path: Path) -> None:
    """delete() counts only rows that were there (the engine's queue depth counts down by it)."""
    from alerts.model import Notification

    store = Store.open(tmp_path / "state")
    try:
        note = Notification(key="k", event="firing", labels={"alertname": "X"}, annotations={}, starts_at=1.0, at=2.0)
        store.commit(enqueue=[("webhook", note), ("webhook", note)], now=2.0)
        ids = [row.id for row in store.head("webhook", 10)]
        assert 2 == store.delete([*ids, 999])
        assert (0, 0) == (store.delete(ids), store.depth())
        assert 0 == store.delete([])
    finally:
        store.close()
