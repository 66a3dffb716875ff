"""Alert state and the outbox held in memory and mirrored to SQLite: a failed write is kept, retried and reported.

The engine and the delivery lanes read and change the copy in memory; every change is written through to the
`Store` at once. When a write fails (a full disk, a read-only remount, an I/O error), nothing is lost and nothing
is repeated: the changes stay in memory and are retried with a bounded backoff, notifications are delivered from
memory meanwhile (a delivered one is never sent again, even when its row cannot be deleted yet), and the failure
is reported: `pam_monitor_state_write_failures_total`, `pam_monitor_state_healthy` 0, one log line at error per
episode, and `problem` (what /readyz and the MonitorWatchdog's annotations say). A `state_dir` deleted while running
is noticed at the next write or within `check_every` seconds, recreated, and everything in memory written again; so
is a database whose -wal or -shm was deleted or replaced (SQLite would go on writing into the deleted file, and a
crash would lose every write since).

The journal holds `state_dir`'s lock (alerts.persist.lock) from `open` to `aclose`: a second daemon on the same
`state_dir` is refused instead of paging everything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import prometheus_client
import structlog

from alerts.lifecycle.machine import AlertState
from alerts.model import CheckMemory, Notification
from alerts.persist.database import FILENAME, Store
from alerts.persist.lock import StateLock
from alerts.persist.rows import OutboxRow, Unreadable
from monitor.core.clock import iso
from monitor.core.errors import StoreError, StoreVanishedError

log = structlog.get_logger("pam_monitor.alerts")

RETRY_BASE = 0.5
RETRY_CAP = 30.0
CHECK_EVERY = 5.0


class Journal:
    """The live alert state and outbox, and their durable copy. Never raises once open."""

    def __init__(
        self,
        state_dir: Path,
        *,
        store_factory: Callable[[Path], Store],
        registry: prometheus_client.CollectorRegistry,
        clock: Callable[[], float],
        retry_base: float = RETRY_BASE,
        retry_cap: float = RETRY_CAP,
        check_every: float = CHECK_EVERY,
    ) -> None:
        self._state_dir = Path(state_dir)
        self._factory = store_factory
        self._clock = clock
        self._retry_base, self._retry_cap, self._check_every = retry_base, retry_cap, check_every
        self._store: Store | None = None
        self._lock = StateLock(self._state_dir)
        self.states: dict[str, AlertState] = {}
        self.memory: dict[str, CheckMemory] = {}
        self._rows: dict[int, OutboxRow] = {}
        self._lanes: dict[str, dict[int, OutboxRow]] = {}
        self._last_id = 0
        self._dirty_states: set[str] = set()
        self._dirty_memory: set[str] = set()
        self._dirty_rows: set[int] = set()
        self._resync = False  # rewrite everything (into a recreated database)
        self._failing_since: float | None = None
        self._error = ""
        self._attempts = 0
        self._delay = retry_base
        self._next_try = 0.0  # monotonic
        self._task: asyncio.Task[None] | None = None
        self._failures = prometheus_client.Counter(
            "pam_monitor_state_write_failures", "Writes of alert state and the outbox to state_dir that failed "
            "(each is kept in memory and retried).", registry=registry)
        self._healthy = prometheus_client.Gauge(
            "pam_monitor_state_healthy", "1 while alert state and the outbox are saved to state_dir, 0 while "
            "writes fail (a restart now would forget what is only in memory).", registry=registry)
        self._quarantined = prometheus_client.Counter(
            "pam_monitor_outbox_quarantined", "Stored rows that could not be read back (or sent), moved to the "
            "quarantine table instead of blocking their lane.", registry=registry)
        self._healthy.set(1)

    # ------------------------------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Take state_dir's lock, open the database and read it into memory, quarantining unreadable rows; raises
        StoreError (StateDirBusyError when another process holds the lock)."""
        self._lock.acquire()
        try:
            store = self._factory(self._state_dir)
        except StoreError:
            self._lock.release()
            raise
        try:
            contents = store.load()
        except StoreError:
            with contextlib.suppress(StoreError):
                store.close()
            self._lock.release()
            raise
        self._store = store
        self.states, self.memory, self._last_id = contents.states, contents.memory, contents.last_id
        for row in contents.outbox:
            self._put_row(row)
        if contents.unreadable:
            try:
                store.quarantine(contents.unreadable, self._clock())
            except StoreError:
                with contextlib.suppress(StoreError):
                    store.close()
                self._lock.release()
                raise
            for bad in contents.unreadable:
                self._report_quarantine(bad)

    def start(self) -> None:
        """Start the background retry and the periodic check that state_dir is still there."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="alerts:journal")

    async def aclose(self) -> None:
        """Stop the background task, try a last write of what is pending, close the database."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.pending and not self._flush():
            log.error("alerts.state_unsaved_at_exit", path=str(self._state_dir), error=self._error,
                      hint="changes since the write failures began are lost; the next start reads the database as "
                           "it was last written")
        if self._store is not None:
            with contextlib.suppress(StoreError):
                self._store.close()
            self._store = None
        self._lock.release()

    # ------------------------------------------------------------------------------------------ health

    @property
    def pending(self) -> bool:
        """Changes in memory that are not saved yet."""
        return bool(self._resync or self._dirty_states or self._dirty_memory or self._dirty_rows)

    @property
    def problem(self) -> str | None:
        """None while state is being saved; otherwise one sentence for /readyz and the watchdog."""
        if self._failing_since is None:
            return None
        return (f"alert state is not being saved since {iso(self._failing_since)} ({self._attempts} failed "
                f"writes; changes are kept in memory and retried, a restart now would forget them): {self._error}")

    @property
    def writes(self) -> int:
        """Write transactions of the current database connection (0 before open)."""
        return self._store.writes if self._store is not None else 0

    @property
    def changes(self) -> int:
        """Rows changed through the current database connection (0 before open or when it cannot say)."""
        try:
            return self._store.changes if self._store is not None else 0
        except StoreError:
            return 0

    # ------------------------------------------------------------------------------------------ engine writes

    def commit(
        self,
        *,
        states: Iterable[AlertState] = (),
        delete_states: Iterable[str] = (),
        memory: Iterable[tuple[str, CheckMemory]] = (),
        enqueue: Iterable[tuple[str, Notification]] = (),
        now: float = 0.0,
    ) -> None:
        """Adopt state changes and new outbox rows, then save them in one transaction (or keep them for later)."""
        changed = False
        for state in states:
            self.states[state.key] = state
            self._dirty_states.add(state.key)
            changed = True
        for key in delete_states:
            self.states.pop(key, None)
            self._dirty_states.add(key)
            changed = True
        for name, remembered in memory:
            self.memory[name] = remembered
            self._dirty_memory.add(name)
            changed = True
        for lane, note in enqueue:
            self._last_id += 1
            self._put_row(OutboxRow(self._last_id, lane, note, 0, now, now))
            self._dirty_rows.add(self._last_id)
            changed = True
        if changed:
            self._save()

    def forget_checks(self, names: Iterable[str]) -> None:
        """Drop the memory of checks that left the config."""
        gone = list(names)
        for name in gone:
            self.memory.pop(name, None)
        if gone:
            self._dirty_memory.update(gone)
            self._save()

    # ------------------------------------------------------------------------------------------ the outbox

    def head(self, lane: str, limit: int = 1) -> list[OutboxRow]:
        """The oldest `limit` rows of a lane, in order."""
        return list(itertools.islice(self._lanes.get(lane, {}).values(), limit))

    def depth(self) -> int:
        """How many notifications wait to be delivered, over all lanes."""
        return len(self._rows)

    def lanes(self) -> set[str]:
        """Lanes that have rows waiting."""
        return set(self._lanes)

    def delete(self, ids: Sequence[int]) -> int:
        """Forget delivered (or abandoned) rows at once, so they are never sent again; their deletion on disk is
        retried until it succeeds. Returns how many were there."""
        removed = sum(1 for i in ids if self._drop_row(i))
        if removed:
            self._save()
        return removed

    def reschedule(self, ids: Sequence[int], *, attempts: int, next_attempt_at: float) -> None:
        """Record a failed attempt and when to try again."""
        for i in ids:
            row = self._rows.get(i)
            if row is not None:
                self._put_row(replace(row, attempts=attempts, next_attempt_at=next_attempt_at))
                self._dirty_rows.add(i)
        self._save()

    def hurry(self, now: float) -> None:
        """Make every row due now (used when flushing at shutdown)."""
        for row in [r for r in self._rows.values() if r.next_attempt_at > now]:
            self._put_row(replace(row, next_attempt_at=now))
            self._dirty_rows.add(row.id)
        self._save()

    def drop_lanes(self, keep: set[str]) -> dict[str, int]:
        """Delete the rows of lanes no longer configured; returns how many per lane."""
        dropped = {lane: len(rows) for lane, rows in self._lanes.items() if lane not in keep}
        for lane in dropped:
            for i in list(self._lanes[lane]):
                self._drop_row(i)
        if dropped:
            self._save()
        return dropped

    def quarantine(self, row: OutboxRow, reason: str, *, report: bool = True) -> bool:
        """Take a row that cannot be sent out of its lane, keep it in the quarantine table, count it and (unless
        the caller logs it itself: `report=False`) say so once; False if the row was no longer queued."""
        if not self._drop_row(row.id):
            return False
        bad = Unreadable("outbox", str(row.id), row.notification.to_json(), reason, row.lane)
        if report:
            self._report_quarantine(bad)
        else:
            self._quarantined.inc()
        if self._store is not None and self._failing_since is None:
            try:
                self._store.quarantine([bad], self._clock())
            except StoreError:
                pass  # the deletion stays pending and goes with the next write; only the kept copy is lost
            else:
                self._dirty_rows.discard(row.id)
        self._save()
        return True

    # ------------------------------------------------------------------------------------------ internals

    def _put_row(self, row: OutboxRow) -> None:
        self._rows[row.id] = row
        self._lanes.setdefault(row.lane, {})[row.id] = row

    def _drop_row(self, row_id: int) -> bool:
        row = self._rows.pop(row_id, None)
        if row is None:
            return False
        lane = self._lanes[row.lane]
        del lane[row_id]
        if not lane:
            del self._lanes[row.lane]
        self._dirty_rows.add(row_id)
        return True

    def _save(self) -> None:
        """Write what is pending now, unless a failure episode is waiting for its next retry."""
        if self._failing_since is None or time.monotonic() >= self._next_try:
            self._flush()

    def _flush(self, *, again: bool = True) -> bool:
        try:
            store = self._store
            if store is None:
                self._lock.acquire()  # state_dir was recreated: lock its new lock file before writing into it
                store = self._store = self._factory(self._state_dir)
            if self._resync:
                store.write(states=self.states, memory=self.memory, outbox=self._rows, replace=True)
            else:
                store.write(
                    states={k: self.states.get(k) for k in self._dirty_states},
                    memory={k: self.memory.get(k) for k in self._dirty_memory},
                    outbox={i: self._rows.get(i) for i in self._dirty_rows},
                )
        except StoreVanishedError as exc:
            self._vanished(exc)
            if again:
                return self._flush(again=False)
            self._failed(exc)
            return False
        except StoreError as exc:
            self._failed(exc)
            return False
        self._dirty_states.clear()
        self._dirty_memory.clear()
        self._dirty_rows.clear()
        if self._resync:
            log.warning("alerts.state_rewritten", path=str(self._state_dir), states=len(self.states),
                        outbox=len(self._rows))
        self._resync = False
        if self._failing_since is not None:
            log.warning("alerts.state_write_recovered", path=str(self._state_dir), failed_writes=self._attempts,
                        failing_for_s=round(self._clock() - self._failing_since, 3))
            self._failing_since, self._error, self._attempts, self._delay = None, "", 0, self._retry_base
            self._healthy.set(1)
        return True

    def _vanished(self, exc: StoreError) -> None:
        """The database (or its -wal or -shm) is gone: drop the orphaned connection and write everything again
        into a new one."""
        paths = exc.paths if isinstance(exc, StoreVanishedError) else []
        database = str(self._state_dir / FILENAME)
        if paths and database not in paths:
            log.error("alerts.state_files_replaced", path=str(self._state_dir), files=paths, error=str(exc),
                      hint="a file of the state database was deleted or replaced while running (writes into it "
                           "would be lost at the next crash); the alert state and outbox in memory are written "
                           "again into a fresh database file set")
        else:
            log.error("alerts.state_dir_vanished", path=str(self._state_dir), error=str(exc),
                      hint="state_dir was deleted or replaced while running; it is recreated and the alert state "
                           "and outbox in memory are written to it again")
        if self._store is not None:
            with contextlib.suppress(StoreError):
                self._store.close()
        self._store = None
        self._resync = True

    def _failed(self, exc: StoreError) -> None:
        self._failures.inc()
        self._attempts += 1
        self._error = str(exc)
        if self._failing_since is None:
            self._failing_since = self._clock()
            self._healthy.set(0)
            log.error("alerts.state_write_failed", path=str(self._state_dir), error=self._error,
                      hint="alert state and queued notifications are kept in memory and delivered; the write is "
                           "retried (free space or fix permissions under state_dir); a restart before it succeeds "
                           "forgets them")
        else:
            self._delay = min(self._retry_cap, self._delay * 2)
        self._next_try = time.monotonic() + self._delay

    def _report_quarantine(self, bad: Unreadable) -> None:
        self._quarantined.inc()
        log.error("outbox.quarantined" if bad.source == "outbox" else "alerts.state_quarantined",
                  table=bad.source, row=bad.ref, sink=(bad.lane or "").split("#", 1)[0] or None,
                  alert=_alertname(bad.body), reason=bad.reason,
                  hint="the row was moved to the quarantine table of the state database; the others carry on")

    async def _watch(self) -> None:
        """Retry pending writes when due; check every `check_every` seconds that the database is still there."""
        last_check = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, self._retry_base, self._check_every))
            now = time.monotonic()
            try:
                if self.pending and now >= self._next_try:
                    self._flush()
                elif now - last_check >= self._check_every and self._store is not None and not self.pending:
                    last_check = now
                    gone = self._store.replaced()
                    if gone:
                        self._vanished(StoreVanishedError(f"files of the alert state database in {self._state_dir} "
                                                          f"were deleted or replaced: {', '.join(gone)}", gone))
                        self._flush()
            except Exception as exc:  # a bug here must not stop the retries
                log.exception("alerts.journal_error", error_type=type(exc).__name__)


def _alertname(body: str | None) -> str | None:
    """The alertname in a stored notification or state, if it can be read at all."""
    try:
        raw = json.loads(body or "")
        name = raw.get("labels", {}).get("alertname") or raw.get("alertname")
    except (ValueError, AttributeError, TypeError):
        return None
    return name if isinstance(name, str) else None
