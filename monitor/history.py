"""Availability and latency over time, per check: bounded rollups in the state database.

Every counted run (all but `rate_limited`, which says nothing about the target) goes into two buckets of its
check: a 5-minute one (kept 25 hours: the 1 h and 24 h windows) and an hour one (kept 30 days and an hour: the 7 d
and 30 d windows, and the page's 30-day strip). A bucket holds runs, good runs and a latency histogram of
`LATENCY_BOUNDS` (1 ms growing 1.5x a step to 57 s, then +Inf), from which p50 and p95 are interpolated like
Prometheus' histogram_quantile (within about a fifth of the true value).

The probe path only adds to in-memory deltas (`record`, no I/O); `flush` (every FLUSH_EVERY_S, on a worker
thread, and at shutdown) adds them to the rows in one transaction and drops expired rows; `refresh` recomputes
the summary /status shows (every SUMMARY_EVERY_S, on the same worker thread: requests only read it). Each row is
small integers in columns (SQLite stores a 0 in its header byte alone), so the size bound holds by construction:
at most 300 + 721 rows a check, about ROW_BYTES each (tests/monitor/test_history.py holds 60 KB a check;
bench.history measured 54 MB at 1,000 checks; README "History").
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from monitor.core.results import Outcome, Result

log = structlog.get_logger("pam_monitor.history")

LATENCY_BOUNDS: tuple[float, ...] = tuple(0.001 * 1.5 ** k for k in range(28))
"""Upper bounds of the latency buckets in seconds (1 ms ... 57 s); one more bucket holds the rest."""
FINE_S = 300
COARSE_S = 3600
FINE_KEEP_S = 25 * 3600
COARSE_KEEP_S = 30 * 86400 + 3600
WINDOWS: tuple[tuple[str, int], ...] = (("1h", 3600), ("24h", 86400), ("7d", 7 * 86400), ("30d", 30 * 86400))
DAYS = 30
FLUSH_EVERY_S = 60.0
SUMMARY_EVERY_S = 300.0
ROW_BYTES = 53
"""About what one row costs on disk, page overhead included (bench.history: 52.8 KB for a check's 1,021 rows)."""
_HIST = [f"h{i}" for i in range(len(LATENCY_BOUNDS) + 1)]
_COLUMNS = ["runs", "ok", *_HIST]
_TABLES = {"history_5m": FINE_S, "history_1h": COARSE_S}


def _schema() -> str:
    cols = ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in _COLUMNS)
    return "\n".join([
        "CREATE TABLE IF NOT EXISTS history_checks (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);",
        *(f"CREATE TABLE IF NOT EXISTS {t} (check_id INTEGER NOT NULL, start INTEGER NOT NULL, {cols}, "
          "PRIMARY KEY (check_id, start)) WITHOUT ROWID;" for t in _TABLES),
    ])


# Table and column names are this module's constants; values always go in as parameters.
_UPSERT = {t: (f"INSERT INTO {t} (check_id, start, {', '.join(_COLUMNS)}) "  # noqa: S608
               f"VALUES (?, ?, {', '.join('?' for _ in _COLUMNS)}) ON CONFLICT (check_id, start) DO UPDATE SET "
               + ", ".join(f"{c} = {c} + excluded.{c}" for c in _COLUMNS)) for t in _TABLES}
_SUMS = ", ".join(f"sum({c})" for c in _COLUMNS)


def quantile(q: float, counts: list[int]) -> float | None:
    """The q-quantile of a latency histogram (counts per LATENCY_BOUNDS bucket, then +Inf), interpolated inside
    its bucket as Prometheus' histogram_quantile does; None without runs."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i == len(LATENCY_BOUNDS):  # past the last bound: the bound is all we know
                return LATENCY_BOUNDS[-1]
            low = LATENCY_BOUNDS[i - 1] if i else 0.0
            return low + (LATENCY_BOUNDS[i] - low) * (rank - seen) / n
        seen += n
    return LATENCY_BOUNDS[-1]


HISTORY_FILENAME = "history.sqlite3"
"""The rollups' own database in `state_dir`. Not the alert store's file: a second long-lived connection to that one
would share SQLite's per-inode WAL and shared-memory mapping with the store's, and after someone deleted its -wal or
-shm the store could not reopen it (disk I/O error) to write the alert state again; and the history's size (tens of
MB at 1,000 checks) stays apart from the state that decides pages."""


class History:
    """The rollups of one state database; `record` on the probe path, `flush` and `summary` from other threads."""

    def __init__(self, state_dir: Path, clock: Callable[[], float], *, filename: str = HISTORY_FILENAME,
                 read_only: bool = False) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # the pending deltas
        self._db_lock = threading.Lock()
        path = Path(state_dir) / filename
        if read_only:
            self._db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=1.0,
                                       check_same_thread=False)
        else:
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=5.0, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
            # As the alert store sets it: a flush is one WAL append, not a journal and two fsyncs.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_schema())
        self._ids: dict[str, int] = dict(self._db.execute("SELECT name, id FROM history_checks").fetchall())
        self._pending: dict[tuple[str, str, int], list[int]] = {}
        self._pruned_at = float("-inf")
        self._summary: dict[str, dict[str, Any]] = {}
        self._summary_at = float("-inf")

    # -- the probe path ------------------------------------------------------------------------------------

    def record(self, result: Result) -> None:
        """Count one finished run in its buckets (in memory; a `rate_limited` run is not counted)."""
        if result.outcome is Outcome.RATE_LIMITED:
            return
        at = int(result.finished_at)
        slot = 2 + bisect.bisect_left(LATENCY_BOUNDS, result.duration_s)
        good = 1 if result.success else 0
        with self._lock:
            for table, size in _TABLES.items():
                key = (table, result.check, at - at % size)
                row = self._pending.get(key)
                if row is None:
                    row = self._pending[key] = [0] * len(_COLUMNS)
                row[0] += 1
                row[1] += good
                row[slot] += 1

    # -- writing -------------------------------------------------------------------------------------------

    def flush(self) -> int:
        """Add the pending deltas to their rows in one transaction and drop expired rows; returns rows written.
        A failing disk keeps the deltas for the next flush (logged)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        now = self._clock()
        try:
            with self._db_lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for (table, check, start), row in pending.items():
                        self._db.execute(_UPSERT[table], (self._id(check), start, *row))
                    if now - self._pruned_at >= FINE_S:
                        # Per check, so each delete is a range of the primary key rather than a scan of the table.
                        for check_id in self._ids.values():
                            self._db.execute("DELETE FROM history_5m WHERE check_id = ? AND start < ?",
                                             (check_id, int(now) - FINE_KEEP_S))
                            self._db.execute("DELETE FROM history_1h WHERE check_id = ? AND start < ?",
                                             (check_id, int(now) - COARSE_KEEP_S))
                        self._pruned_at = now
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            log.warning("history.flush_failed", error=str(exc), rows=len(pending))
            with self._lock:
                for key, row in pending.items():
                    kept = self._pending.setdefault(key, [0] * len(_COLUMNS))
                    for i, n in enumerate(row):
                        kept[i] += n
            return 0
        return len(pending)

    def _id(self, check: str) -> int:
        found = self._ids.get(check)
        if found is None:
            self._db.execute("INSERT OR IGNORE INTO history_checks (name) VALUES (?)", (check,))
            found = self._ids[check] = int(
                self._db.execute("SELECT id FROM history_checks WHERE name = ?", (check,)).fetchone()[0])
        return found

    # -- reading -------------------------------------------------------------------------------------------

    def refresh(self) -> Mapping[str, dict[str, Any]]:
        """Flush, then recompute the summary from the tables (about 2 s of SQLite at 1,000 checks on a busy
        machine, bench.history: the daemon does it on a worker thread every SUMMARY_EVERY_S, never in a
        request)."""
        self.flush()
        now = self._clock()
        self._summary = self._compute(now)
        self._summary_at = now
        return self._summary

    def summary(self, checks: Iterable[str] | None = None) -> Mapping[str, dict[str, Any]]:
        """The last computed summary (see refresh), per check: `{"1h": {"runs", "availability", "p50_s",
        "p95_s"}, "24h": ..., "7d": ..., "30d": ..., "days": [30 daily availabilities, oldest first, None for a
        day without runs], "days_from": the first day, "as_of": when it was computed}`. `checks` limits the
        answer (default: every check with history)."""
        if checks is None:
            return self._summary
        return {name: self._summary[name] for name in checks if name in self._summary}

    def _compute(self, now: float) -> dict[str, dict[str, Any]]:
        names = {v: k for k, v in self._ids.items()}
        out: dict[str, dict[str, Any]] = {}
        today = int(now) - int(now) % 86400
        first_day = today - (DAYS - 1) * 86400
        with self._db_lock:
            for label, span in WINDOWS:
                table = "history_5m" if span <= 86400 else "history_1h"
                size = _TABLES[table]
                since = int(now) - span
                since -= since % size  # whole buckets: a window reaches back at most one bucket further
                query = f"SELECT check_id, {_SUMS} FROM {table} WHERE start >= ? GROUP BY check_id"  # noqa: S608
                rows = self._db.execute(query, (since,)).fetchall()
                for check_id, runs, ok, *hist in rows:
                    name = names.get(check_id)
                    if name is None:
                        continue
                    out.setdefault(name, {})[label] = {
                        "runs": runs, "availability": round(ok / runs, 6) if runs else None,
                        "p50_s": _round(quantile(0.5, hist)), "p95_s": _round(quantile(0.95, hist)),
                    }
            days = self._db.execute(
                "SELECT check_id, (start - ?) / 86400, sum(runs), sum(ok) FROM history_1h WHERE start >= ? "
                "GROUP BY check_id, (start - ?) / 86400", (first_day, first_day, first_day)).fetchall()
        for check_id, day, runs, ok in days:
            name = names.get(check_id)
            if name is None or name not in out:
                continue
            strip = out[name].setdefault("days", [None] * DAYS)
            if 0 <= day < DAYS and runs:
                strip[day] = round(ok / runs, 6)
        as_of = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        for entry in out.values():
            entry.setdefault("days", [None] * DAYS)
            entry["days_from"] = datetime.fromtimestamp(first_day, UTC).date().isoformat()
            entry["as_of"] = as_of
        return out

    def buckets(self, checks: Iterable[str], since: float) -> list[tuple[str, float, float, int, int]]:
        """The written buckets of these checks that reach past `since`, each run once: `(check, start, size_s,
        runs, good)`, 5-minute buckets from the last whole hour a day back, hour buckets before it (each run is in
        one of each; the ErrorBudgetBurn minute counts are restored from these on start, alerts/judge/burn.py)."""
        ids = {self._ids[name]: name for name in checks if name in self._ids}
        if not ids:
            return []
        now = int(self._clock())
        cut = now - 86400
        cut -= cut % COARSE_S  # 5-minute buckets reach back 25 h: they cover everything from here on
        out: list[tuple[str, float, float, int, int]] = []
        marks = ", ".join("?" for _ in ids)
        with self._db_lock:
            # A bucket that began before `since` but reaches past it counts too; `cut` is an hour's start, so the
            # hour buckets before it and the 5-minute ones from it on never hold the same run.
            for table, low, high in (("history_1h", int(since) - COARSE_S + 1, cut),
                                     ("history_5m", max(int(since) - FINE_S + 1, cut), now + 1)):
                size = float(_TABLES[table])
                query = (f"SELECT check_id, start, runs, ok FROM {table} "  # noqa: S608
                         f"WHERE check_id IN ({marks}) AND start >= ? AND start < ? ORDER BY start")
                out += [(ids[cid], float(start), size, int(runs), int(ok))
                        for cid, start, runs, ok in self._db.execute(query, (*ids, low, high)).fetchall()]
        out.sort(key=lambda row: row[1])
        return out

    def size_bytes(self) -> int:
        """Bytes the history tables take (SQLite's dbstat when built in, else their pages counted)."""
        with self._db_lock:
            try:
                found = self._db.execute(
                    "SELECT sum(pgsize) FROM dbstat WHERE name IN ('history_5m', 'history_1h', 'history_checks') "
                    "OR name LIKE 'sqlite_autoindex_history_%'").fetchone()[0]
                return int(found or 0)
            except sqlite3.Error:
                pages, size = (self._db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size"))
                return int(pages) * int(size)

    def close(self) -> None:
        """Flush what is pending and close."""
        self.flush()
        with self._db_lock:
            self._db.close()


def read_over_time(state_dir: Path, checks: Iterable[str], clock: Callable[[], float]) -> Mapping[str, Any] | None:
    """What a running (or stopped) daemon's history says about these checks, read without writing; None when
    `state_dir` holds no history (`pam-monitor check --format json` adds it per check when there is one)."""
    path = Path(state_dir) / HISTORY_FILENAME
    if not path.is_file():
        return None
    try:
        history = History(state_dir, clock, read_only=True)
    except sqlite3.Error:
        return None
    try:
        history.refresh()
        return history.summary(checks)
    except sqlite3.Error:  # no history tables yet (a daemon from before them), or the file is not ours
        return None
    finally:
        history._db.close()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


__all__ = ["LATENCY_BOUNDS", "WINDOWS", "History", "quantile", "read_over_time"]
