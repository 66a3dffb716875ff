"""Durable alert state and the notification outbox, in SQLite (WAL) under `state_dir`.

Every public method raises `StoreError` (never a bare sqlite3 or OS error) when the database cannot be used; at
open, the error says what is wrong, with which path, and the fix, in one line (`StateDirError` when `state_dir`
itself cannot be created or written: a configuration problem). Rows that cannot be read back are not errors: they
come back as `Unreadable` and `quarantine` moves them aside.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from alerts.lifecycle.machine import AlertState
from alerts.model import CheckMemory
from alerts.persist import rows as stored
from alerts.persist.rows import OutboxRow, Unreadable
from monitor.core.errors import StateDirError, StoreError, StoreVanishedError

FILENAME = "alerts.sqlite3"
_TABLES = {
    "alert_state": ("key", "body"),
    "check_memory": ("check_name", "body"),
    "outbox": ("id", "lane", "body", "attempts", "next_attempt_at", "created_at"),
    "quarantine": ("id", "source", "ref", "body", "reason", "quarantined_at"),
    "refusal_shape": ("key", "body"),
}
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
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, ref TEXT NOT NULL, body TEXT,
    reason TEXT NOT NULL, quarantined_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refusal_shape (key TEXT PRIMARY KEY, body TEXT NOT NULL);
"""
_VERSION = 1
_MIGRATIONS = {
    # Version 1 names every lane `<sink>#<index>`; before it, single-URL sinks' lanes were just `<sink>`.
    1: "UPDATE outbox SET lane = lane || '#0' WHERE instr(lane, '#') = 0",
}
_MOVE_ASIDE = ("move {file} aside to start with empty alert state (firing alerts and queued notifications in it "
               "are forgotten), or restore it from a backup")


@dataclass(slots=True)
class Contents:
    """Everything a database holds that can be read back, and what cannot."""

    states: dict[str, AlertState]
    memory: dict[str, CheckMemory]
    outbox: list[OutboxRow]
    unreadable: list[Unreadable]
    last_id: int


class Store:
    """The state database. Calls are synchronous and small; the engine makes them from the event loop."""

    def __init__(self, path: Path, *, trace: Callable[[str], object] | None = None) -> None:
        self.path = path
        self._writes = 0
        check_dir(path.parent)
        with _opening(path):
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=5.0)
        try:
            with _opening(path):
                self._db.execute("PRAGMA busy_timeout=5000")
                if str(self._db.execute("PRAGMA quick_check(1)").fetchone()[0]) != "ok":
                    raise sqlite3.DatabaseError("database disk image is malformed (quick_check)")
                version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
                if version > _VERSION:
                    raise StoreError(f"cannot use the alert state database {path}: it was written by a newer "
                                     f"pam-monitor (schema {version}, this one knows {_VERSION}); run that version, "
                                     f"or {_MOVE_ASIDE.format(file=path)}")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._check_schema(missing_ok=True)
                self._db.executescript(_SCHEMA)
                self._check_schema()
                self._migrate(version)
                with _Tx(self._db):  # a real write now: a full disk is found at start-up, not at the first alert
                    self._db.execute(f"PRAGMA user_version = {_VERSION}")
                # The database and, now that a write made them, its -wal and -shm: all three must stay these files.
                self._identity: dict[Path, tuple[int, int] | None] = {
                    p: _identity(p) for p in _files(path) if _identity(p) is not None}
        except BaseException:
            self._db.close()
            raise
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
        # SQLite removes the -wal and -shm when its last connection closes: only the database must stay.
        self._identity = {p: known for p, known in self._identity.items() if p == self.path}

    # ------------------------------------------------------------------------------------------ reads

    def load(self) -> Contents:
        """Every state, memory and outbox row (oldest first); rows that cannot be read back are listed apart."""
        bad: list[Unreadable] = []
        with self._failing("read"):
            state_rows = self._db.execute("SELECT key, body FROM alert_state").fetchall()
            memory_rows = self._db.execute("SELECT check_name, body FROM check_memory").fetchall()
            outbox_rows = self._db.execute(
                "SELECT id, lane, body, attempts, next_attempt_at, created_at FROM outbox ORDER BY id").fetchall()
            seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        states = dict(stored.parsed("alert_state", state_rows, stored.state, bad))
        memory = dict(stored.parsed("check_memory", memory_rows, stored.memory, bad))
        outbox: list[OutboxRow] = []
        for raw in outbox_rows:
            try:
                outbox.append(stored.outbox_row(raw))
            except stored.PARSE_ERRORS as exc:
                bad.append(Unreadable("outbox", str(raw[0]), stored.text(raw[2]), stored.why(exc),
                                      raw[1] if isinstance(raw[1], str) else None))
        last = max([int(seq[0]) if seq and isinstance(seq[0], int) else 0, *(r.id for r in outbox)])
        return Contents(states, memory, outbox, bad, last)

    def load_states(self) -> dict[str, AlertState]:
        """Every readable persisted alert state by key."""
        return self.load().states

    def head(self, lane: str, limit: int = 1) -> list[OutboxRow]:
        """The oldest `limit` readable rows of a lane, in order, as on disk now (for tools and tests)."""
        return [row for row in self.load().outbox if row.lane == lane][:limit]

    def depth(self) -> int:
        """How many rows the outbox table holds."""
        with self._failing("read"):
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    # ------------------------------------------------------------------------------------------ writes

    def write(
        self,
        *,
        states: Mapping[str, AlertState | None] = {},
        memory: Mapping[str, CheckMemory | None] = {},
        outbox: Mapping[int, OutboxRow | None] = {},
        replace: bool = False,
    ) -> None:
        """Bring rows in line with the given values in one transaction (all or nothing): None deletes the row.
        `replace` empties the three tables first (re-persisting everything into a recreated database).

        Raises `StoreVanishedError` when the database file is no longer the one opened (its directory was
        deleted or replaced), before writing anything.
        """
        if not (states or memory or outbox or replace):
            return
        self._still_there()
        with self._failing("write"), self._tx():
            if replace:
                for table in ("alert_state", "check_memory", "outbox"):
                    self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            _apply(self._db, "alert_state", "key", {k: None if s is None else json.dumps(s.to_dict(), sort_keys=True)
                                                    for k, s in states.items()})
            _apply(self._db, "check_memory", "check_name", {k: None if m is None else m.to_json()
                                                            for k, m in memory.items()})
            gone = [(i,) for i, row in outbox.items() if row is None]
            if gone:
                self._db.executemany("DELETE FROM outbox WHERE id = ?", gone)
            rows = [(r.id, r.lane, r.notification.to_json(), r.attempts, r.next_attempt_at, r.created_at)
                    for r in outbox.values() if r is not None]
            if rows:
                self._db.executemany(
                    "INSERT INTO outbox (id, lane, body, attempts, next_attempt_at, created_at) VALUES (?,?,?,?,?,?) "
                    "ON CONFLICT (id) DO UPDATE SET attempts = excluded.attempts, "
                    "next_attempt_at = excluded.next_attempt_at", rows,
                )

    def quarantine(self, rows: Iterable[Unreadable], now: float) -> None:
        """Move unreadable rows out of their tables into `quarantine` (kept for a person to look at)."""
        items = list(rows)
        if not items:
            return
        self._still_there()
        keys = {"alert_state": "key", "check_memory": "check_name", "outbox": "id"}
        with self._failing("write"), self._tx():
            for row in items:
                self._db.execute("INSERT INTO quarantine (source, ref, body, reason, quarantined_at) "
                                 "VALUES (?, ?, ?, ?, ?)", (row.source, row.ref, row.body, row.reason, now))
                self._db.execute(f"DELETE FROM {row.source} WHERE {keys[row.source]} = ?", (row.ref,))  # noqa: S608

    # -------------------------------------------------------------------------------- learned refusal shapes

    def refusal_shapes(self) -> dict[str, str]:
        """Every endpoint's learned refusal shape (probes/_refusal.py) by key, as stored (JSON text)."""
        with self._failing("read"):
            rows = self._db.execute("SELECT key, body FROM refusal_shape").fetchall()
        return {str(key): str(body) for key, body in rows}

    def save_refusal_shape(self, key: str, body: str) -> None:
        """Keep one learned refusal shape (its own small transaction; alert state is not touched)."""
        self._still_there()
        with self._failing("write"), self._tx():
            _apply(self._db, "refusal_shape", "key", {key: body})

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

    def present(self) -> bool:
        """Whether the database file and its -wal and -shm are still the ones opened (none deleted or replaced)."""
        return not self.replaced()

    def replaced(self) -> list[str]:
        """The files of the database (itself, its -wal, its -shm) that are no longer the ones opened: deleted, or
        replaced by another file. Writes through a deleted -wal would be lost at the next crash."""
        return [str(p) for p, known in self._identity.items() if _identity(p) != known]

    def _still_there(self) -> None:
        gone = self.replaced()
        if not gone:
            return
        if str(self.path) in gone:
            raise StoreVanishedError(f"the alert state database {self.path} is gone (its directory was deleted or "
                                     f"replaced while running)", gone)
        raise StoreVanishedError(f"the alert state database's {' and '.join(gone)} were deleted or replaced while "
                                 f"running (writes there would be lost at the next crash)", gone)

    @contextlib.contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        """Turn a sqlite3 or OS error into a StoreError naming the database and what was being done."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot {doing} the alert state database {self.path}: {exc}") from exc

    def _check_schema(self, *, missing_ok: bool = False) -> None:
        for table, wanted in _TABLES.items():
            have = tuple(r[1] for r in self._db.execute(f"PRAGMA table_info({table})").fetchall())
            if have != wanted and (have or not missing_ok):
                raise sqlite3.DatabaseError(f"table {table} has columns {', '.join(have)}, not {', '.join(wanted)}")

    def _migrate(self, version: int) -> None:
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
        if exc_type is None:
            self._db.execute("COMMIT")
        elif self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the first error is the one worth reporting
                self._db.execute("ROLLBACK")


def inspect(state_dir: Path) -> list[str]:
    """What would stop the daemon from using `state_dir`, one sentence each (with the fix); creates nothing.

    It must exist (or its nearest existing parent be a writable directory, so that it can be created) and be a
    writable directory; a database already in it must be readable, intact and of a schema this version knows.
    """
    state_dir = Path(state_dir)
    fix = "create it writable by the user that runs pam-monitor, or set state_dir to a directory that user can write"
    if not state_dir.exists():
        parent = next((p for p in state_dir.absolute().parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return [f"{state_dir} does not exist and cannot be created ({parent} is not a writable directory); {fix}"]
        return []
    if not state_dir.is_dir():
        return [f"{state_dir} is not a directory; {fix}"]
    if not os.access(state_dir, os.W_OK | os.X_OK):
        return [f"{state_dir} is not writable by this user (or is on a read-only filesystem); {fix}"]
    db = state_dir / FILENAME
    if not db.exists():
        return []
    if not os.access(db, os.R_OK | os.W_OK):
        return [f"{db} is not readable and writable by this user; chown it to the user that runs pam-monitor"]
    try:
        conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            if str(conn.execute("PRAGMA quick_check(1)").fetchone()[0]) != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            for table, wanted in _TABLES.items():
                have = tuple(r[1] for r in conn.execute(f"PRAGMA table_info({table})").fetchall())
                if have and have != wanted:
                    raise sqlite3.DatabaseError(f"table {table} has columns {', '.join(have)}")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [f"the alert state database {db} is unusable ({exc}); {_MOVE_ASIDE.format(file=db)}"]
    if version > _VERSION:
        return [f"the alert state database {db} was written by a newer pam-monitor (schema {version}); run that "
                f"version, or {_MOVE_ASIDE.format(file=db)}"]
    return []


def _apply(db: sqlite3.Connection, table: str, key: str, values: Mapping[str, str | None]) -> None:
    upserts = [(k, v) for k, v in values.items() if v is not None]
    deletes = [(k,) for k, v in values.items() if v is None]
    if upserts:
        db.executemany(f"INSERT INTO {table} ({key}, body) VALUES (?, ?) "  # noqa: S608 - fixed names
                       f"ON CONFLICT ({key}) DO UPDATE SET body = excluded.body", upserts)
    if deletes:
        db.executemany(f"DELETE FROM {table} WHERE {key} = ?", deletes)  # noqa: S608 - fixed names


def _files(path: Path) -> tuple[Path, Path, Path]:
    """The database and the two files SQLite keeps beside it in WAL mode."""
    return path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_dir(state_dir: Path) -> None:
    """Create `state_dir` if needed; refuse (a configuration problem) when it cannot be created or written."""
    fix = "create it writable by this user, or set state_dir to a directory this user can write"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(f"state_dir {state_dir} is not a directory; {fix}") from None
    except OSError as exc:
        raise StateDirError(f"state_dir {state_dir} cannot be created ({exc.strerror or exc}); {fix}") from None
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise StateDirError(f"state_dir {state_dir} is not writable by this user (or is on a read-only "
                            f"filesystem); {fix}")
    db = state_dir / FILENAME
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StateDirError(f"{path} is not readable and writable by this user; give it to the user that runs "
                                f"pam-monitor (chown), or set state_dir elsewhere")


@contextlib.contextmanager
def _opening(path: Path) -> Iterator[None]:
    """Turn what goes wrong while opening into one StoreError line: what, which path, the fix."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "full" in text or _nearly_full(path.parent):
            fix = f"free space on the filesystem that holds {path.parent} (it is full), then start again"
        elif "I/O error" in text:
            fix = f"the filesystem that holds {path.parent} failed a read or write (see dmesg); fix it and start again"
        elif "locked" in text or "busy" in text:
            fix = "another process holds it (is another pam-monitor running with this state_dir?)"
        elif "readonly" in text or "read-only" in text:
            raise StateDirError(f"{path} cannot be written ({text}); make it and state_dir writable by this user, "
                                f"or set state_dir elsewhere") from None
        else:
            fix = _MOVE_ASIDE.format(file=path)
        raise StoreError(f"cannot use the alert state database {path}: {text}; {fix}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the alert state database {path} is corrupt ({exc}); "
                         f"{_MOVE_ASIDE.format(file=path)}") from None
    except OSError as exc:
        raise StoreError(f"cannot use the alert state database {path}: {exc.strerror or exc}; fix the filesystem "
                         f"that holds {path.parent}, then start again") from None


def _nearly_full(directory: Path) -> bool:
    """Less than 64 KiB free for this user where the database lives (SQLite may call that an I/O error)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024
