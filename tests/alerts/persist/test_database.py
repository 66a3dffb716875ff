"""Durability: state and outbox survive kill -9; on restart nothing is re-paged and nothing is forgotten."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from alerts.lifecycle.machine import AlertState, Status
from alerts.model import CheckMemory, Event, Notification
from alerts.persist.database import FILENAME, Store
from alerts.persist.rows import OutboxRow, Unreadable
from monitor.core.errors import StateDirError, StoreError
from tests.support.alerting import Recorder, make_config, make_engine, queue_depth, result, sent
from tests.support.poll import until_async
from tests.support.servers import free_port, serve_asgi

CHECK = "settings_get_unauth"
NOTE = Notification(key="k", event=Event.FIRING, labels={"alertname": "X"}, annotations={}, starts_at=1.0, at=2.0)

ROOT = Path(__file__).resolve().parents[3]
_KILLED = """
import asyncio, os, random, signal, sys
from pathlib import Path
from alerts.persist.database import Store
from tests.support.alerting import make_config, make_engine, result
from tests.support.poll import until_async

async def main():
    state = Path(sys.argv[1])
    config = make_config(state, sinks=[{"kind": "webhook", "url": sys.argv[2]}])
    # Seeded jitter: the first retry comes 1.9 s after the first failure (an unseeded one may come at once, and
    # the reader below would never see attempts == 1).
    engine = make_engine(config, rng=random.Random(2))
    await engine.start()
    for r in (result("settings_get_unauth", "ok", status=403),
              result("settings_get_unauth", "server_error", status=500),
              result("settings_get_unauth", "server_error", status=500, confirmation=True)):
        engine.observe(r)
    # Let a delivery attempt fail against the closed port and be recorded, as another reader sees it on disk.
    reader = Store.open(state)
    await until_async(lambda: [1] == [row.attempts for row in reader.head("webhook#0")], timeout=30)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def row(row_id: int, lane: str = "webhook#0", note: Notification = NOTE) -> OutboxRow:
    """An outbox row as the journal writes it."""
    return OutboxRow(row_id, lane, note, 0, 2.0, 2.0)


def test_store_round_trip_after_unclean_close(tmp_path: Path) -> None:
    """Rows committed and never deleted are there after reopening without a clean shutdown."""
    store = Store.open(tmp_path / "state")
    store.write(outbox={1: row(1)})
    # No close(): the connection object is simply abandoned, as in a crash.
    again = Store.open(tmp_path / "state")
    assert [NOTE] == [r.notification for r in again.head("webhook#0", 10)]
    again.close()
    store.close()


@pytest.mark.process
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
    assert [1] == [row.attempts for row in leftover.head("webhook#0", 10)]
    leftover.close()

    rec = Recorder()
    with serve_asgi(rec.app()) as url:
        registry = prometheus_client.CollectorRegistry()
        config = make_config(state, sinks=[{"kind": "webhook", "url": f"{url}/hook"}])
        async with make_engine(config, registry, backoff_base=0.02, backoff_cap=0.2, flush_timeout=1.0) as engine:
            await until_async(lambda: sent(registry, "webhook") == 1.0)
            assert 1 == len(rec.requests)
            engine.observe(result(CHECK, "server_error", status=500))
            engine.observe(result(CHECK, "server_error", status=500))
            assert 0.0 == queue_depth(registry)
            engine.observe(result(CHECK, "ok", status=403))
            engine.observe(result(CHECK, "ok", status=403))
            await until_async(lambda: len(rec.requests) == 2)
            assert ["firing", "resolved"] == [r["json"]["status"] for r in rec.requests]


def test_nothing_to_write_opens_no_transaction(tmp_path: Path) -> None:
    """write() with nothing in it leaves the write counter alone; a real write moves it."""
    store = Store.open(tmp_path / "state")
    try:
        store.write()
        store.write(states={}, memory={}, outbox={})
        assert (0, 0) == (store.writes, store.changes)
        store.write(outbox={1: row(1), 2: row(2, "slack#0")})
        assert (1, 2) == (store.writes, store.changes)
    finally:
        store.close()


def test_write_deletes_what_is_none(tmp_path: Path) -> None:
    """None in write() deletes the row (a missing one is no error); the other rows stay."""
    store = Store.open(tmp_path / "state")
    try:
        store.write(outbox={1: row(1), 2: row(2)}, states={"k": AlertState("k", "X", "c")})
        store.write(outbox={1: None, 999: None}, states={"k": None})
        assert ([2], {}) == ([r.id for r in store.head("webhook#0", 10)], store.load().states)
    finally:
        store.close()


PUBLIC_CALLS: dict[str, Callable[[Store], Any]] = {
    "load": lambda s: s.load(),
    "load_states": lambda s: s.load_states(),
    "head": lambda s: s.head("webhook#0"),
    "depth": lambda s: s.depth(),
    "write": lambda s: s.write(states={"k": AlertState("k", "X", "c"), "j": None}, memory={"c": CheckMemory()},
                               outbox={1: row(1)}),
    "quarantine": lambda s: s.quarantine([Unreadable("outbox", "1", "{", "bad")], 1.0),
    "changes": lambda s: s.changes,
    "refusal_shapes": lambda s: s.refusal_shapes(),
    "save_refusal_shape": lambda s: s.save_refusal_shape("auth_contract/c", "[]"),
}


def test_every_public_method_is_in_the_table() -> None:
    """The table above names every public method and property of Store but `open` (tested below), `close`
    (closing twice is allowed), `present` and `replaced` (stats of the files) and the plain attributes `path` and
    `writes`."""
    public = {name for name in vars(Store) if not name.startswith("_")} - {"open", "close", "path", "writes",
                                                                           "present", "replaced"}
    assert public == set(PUBLIC_CALLS)


@pytest.mark.parametrize("name", sorted(PUBLIC_CALLS))
def test_every_public_method_raises_store_error(tmp_path: Path, name: str) -> None:
    """A database that cannot be used (here: its connection closed) makes every public method raise StoreError
    naming the file, never a bare sqlite3 error."""
    store = Store.open(tmp_path / "state")
    store.close()
    with pytest.raises(StoreError, match=r"alert state database .*alerts\.sqlite3") as raised:
        PUBLIC_CALLS[name](store)
    assert isinstance(raised.value.__cause__, sqlite3.Error)


def test_open_fails_with_one_line(tmp_path: Path) -> None:
    """A state_dir that is a file is a StateDirError; a file that is not a database a StoreError saying it is
    corrupt and how to move it aside; each message is one line naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateDirError, match="cannot be created") as raised:
        Store.open(blocker / "state")
    assert "\n" not in str(raised.value)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / FILENAME).write_bytes(b"this is not a SQLite database, not even close" * 100)
    with pytest.raises(StoreError, match=r"is corrupt .* move .*alerts\.sqlite3 aside") as corrupt:
        Store.open(tmp_path / "bad")
    assert not isinstance(corrupt.value, StateDirError)
    assert "\n" not in str(corrupt.value)


def test_outbox_rows_of_an_older_version_move_to_lane_zero(tmp_path: Path) -> None:
    """Rows queued by a version that named a single-URL sink's lane `<sink>` are delivered from `<sink>#0`; rows
    already named `<sink>#<index>` stay where they are."""
    store = Store.open(tmp_path / "state")
    store.write(outbox={1: row(1, "webhook"), 2: row(2, "am#1")})
    store.close()
    old = sqlite3.connect(tmp_path / "state" / FILENAME)
    old.execute("PRAGMA user_version = 0")  # what a database from before the lane rename reads
    old.commit()
    old.close()
    again = Store.open(tmp_path / "state")
    try:
        assert {"webhook#0", "am#1"} == {r.lane for r in again.load().outbox}
        assert [NOTE] == [r.notification for r in again.head("webhook#0", 10)]
        assert 0 == again.writes  # the set-up at open is not one of the engine's writes
    finally:
        again.close()
