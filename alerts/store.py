"""Durable alert state and the notification outbox, in SQLite (WAL) under `state_dir`.

Every public method raises `StoreError` (never a bare sqlite3 or OS error) when the database cannot be used.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from alerts.machine import AlertState
from alerts.model import CheckMemory, Notification
from monitor.core.errors import StoreError

FILENAME = "alerts.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_state (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS check_memory (check_name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lane TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_lane ON outbox (lane, id);
"""
_VERSION = 1
_MIGRATIONS = {
    # Version 1 names every lane `<sink>#<index>`; before it, single-URL sinks' lanes were just `<sink>`.
    1: "UPDATE outbox SET lane = lane || '#0' WHERE instr(lane, '#') = 0",
}


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One undelivered notification for one delivery lane (one URL of a sink: `<sink>#<index>`)."""

    id: int
    lane: str
    notification: Notification
    attempts: int
    next_attempt_at: float
    created_at: float


class Store:
    """The state database. Calls are synchronous and small; the engine makes them from the event loop."""

    def __init__(self, path: Path, *, trace: Callable[[str], object] | None = None) -> None:
        self.path = path
        self._writes = 0
        with self._failing("open"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._migrate()
            if trace is not None:
                self._db.set_trace_callback(trace)

    @classmethod
    def open(cls, state_dir: Path, *, trace: Callable[[str], object] | None = None) -> Store:
        """Open (creating the directory and schema if needed) the database in `state_dir`.

        `trace`, if given, is called with every SQL statement this connection runs (benchmarks count them).
        """
        return cls(Path(state_dir) / FILENAME, trace=trace)

    def close(self) -> None:
        """Close the connection; committed data stays."""
        with self._failing("close"):
            self._db.close()

    # ------------------------------------------------------------------------------------------ reads

    def load_states(self) -> dict[str, AlertState]:
        """Every persisted alert state by key."""
        with self._failing("read"):
            rows = self._db.execute("SELECT key, body FROM alert_state").fetchall()
        return {key: AlertState.from_dict(json.loads(body)) for key, body in rows}

    def load_memory(self) -> dict[str, CheckMemory]:
        """What the rules remember per check."""
        with self._failing("read"):
            rows = self._db.execute("SELECT check_name, body FROM check_memory").fetchall()
        return {name: CheckMemory.from_json(body) for name, body in rows}

    def head(self, lane: str, limit: int = 1) -> list[OutboxRow]:
        """The oldest `limit` rows of a lane, in order."""
        with self._failing("read"):
            rows = self._db.execute(
                "SELECT id, lane, body, attempts, next_attempt_at, created_at FROM outbox WHERE lane = ? "
                "ORDER BY id LIMIT ?", (lane, limit)
            ).fetchall()
        return [OutboxRow(r[0], r[1], Notification.from_json(r[2]), r[3], r[4], r[5]) for r in rows]

    def depth(self) -> int:
        """How many notifications wait to be delivered, over all lanes."""
        with self._failing("read"):
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def lanes(self) -> set[str]:
        """Lanes that have rows waiting."""
        with self._failing("read"):
            return {r[0] for r in self._db.execute("SELECT DISTINCT lane FROM outbox").fetchall()}

    # ------------------------------------------------------------------------------------------ writes

    def commit(
        self,
        *,
        states: Iterable[AlertState] = (),
        delete_states: Iterable[str] = (),
        memory: Iterable[tuple[str, CheckMemory]] = (),
        enqueue: Iterable[tuple[str, Notification]] = (),
        now: float = 0.0,
    ) -> None:
        """Write state changes and new outbox rows in one transaction (all or nothing); none if nothing to write."""
        upserts = [(s.key, json.dumps(s.to_dict(), sort_keys=True)) for s in states]
        deletes = [(k,) for k in delete_states]
        memories = [(name, m.to_json()) for name, m in memory]
        rows = [(lane, n.to_json(), now, now) for lane, n in enqueue]
        if not (upserts or deletes or memories or rows):
            return
        with self._failing("write"), self._tx():
            if upserts:
                self._db.executemany(
                    "INSERT INTO alert_state (key, body) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET body = excluded.body", upserts,
                )
            if deletes:
                self._db.executemany("DELETE FROM alert_state WHERE key = ?", deletes)
            if memories:
                self._db.executemany(
                    "INSERT INTO check_memory (check_name, body) VALUES (?, ?) "
                    "ON CONFLICT (check_name) DO UPDATE SET body = excluded.body", memories,
                )
            if rows:
                self._db.executemany(
                    "INSERT INTO outbox (lane, body, attempts, next_attempt_at, created_at) "
                    "VALUES (?, ?, 0, ?, ?)", rows,
                )

    def forget_checks(self, names: Iterable[str]) -> None:
        """Drop the memory of checks that left the config."""
        params = [(n,) for n in names]
        if not params:
            return
        with self._failing("write"), self._tx():
            self._db.executemany("DELETE FROM check_memory WHERE check_name = ?", params)

    def delete(self, ids: Sequence[int]) -> int:
        """Remove delivered (or abandoned) rows; returns how many were there (the engine's depth counter)."""
        if not ids:
            return 0
        with self._failing("write"), self._tx():
            cur = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
        return max(0, cur.rowcount)

    def reschedule(self, ids: Sequence[int], *, attempts: int, next_attempt_at: float) -> None:
        """Record a failed attempt and when to try again."""
        with self._failing("write"), self._tx():
            self._db.executemany(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ? WHERE id = ?",
                [(attempts, next_attempt_at, i) for i in ids],
            )

    def hurry(self, now: float) -> None:
        """Make every row due now (used when flushing at shutdown)."""
        with self._failing("write"), self._tx():
            self._db.execute("UPDATE outbox SET next_attempt_at = ? WHERE next_attempt_at > ?", (now, now))

    def drop_lanes(self, keep: set[str]) -> dict[str, int]:
        """Delete the rows of lanes no longer configured; returns how many per lane."""
        dropped: dict[str, int] = {}
        for lane in self.lanes() - keep:
            with self._failing("write"), self._tx():
                cur = self._db.execute("DELETE FROM outbox WHERE lane = ?", (lane,))
            dropped[lane] = cur.rowcount
        return dropped

    @property
    def writes(self) -> int:
        """Write transactions committed (or rolled back) through this connection since it was opened (the schema
        set-up at open not included)."""
        return self._writes

    @property
    def changes(self) -> int:
        """Rows inserted, updated or deleted through this connection since it was opened (SQLite's count)."""
        with self._failing("read"):
            return self._db.total_changes

    @contextlib.contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        """Turn a sqlite3 or OS error into a StoreError naming the database and what was being done."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot {doing} the alert state database {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        for target in range(version + 1, _VERSION + 1):
            with _Tx(self._db):  # set-up, not counted in `writes`
                self._db.execute(_MIGRATIONS[target])
                self._db.execute(f"PRAGMA user_version = {target}")

    def _tx(self) -> _Tx:
        self._writes += 1
        return _Tx(self._db)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error (the connection is in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
