"""Learned refusal shapes kept across restarts: the probes' RefusalMemory written through to the state database.

probes/_refusal.py learns each auth_contract and tenant_isolation endpoint's own refusal shape from its first good
runs; the daemon keeps them in the `refusal_shape` table of the alert state database in `state_dir`, so a restart
does not learn again (and cannot learn from a wall that went up meanwhile). A database that cannot be read or
written costs only that: the shapes stay in memory, one warning is logged, probing goes on.

No connection is kept open between writes (shapes are learned a few times per check, ever): a second long-lived
connection on the state database would share SQLite's per-inode WAL and shared-memory mapping with the alert
store's, so after someone deleted the -wal/-shm files the store's fresh connection would keep writing into the
deleted ones and a crash would lose them (and repeat a page).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import structlog

from alerts.persist.database import Store
from monitor.core.errors import StoreError
from probes.deps import RefusalMemory

log = structlog.get_logger("pam_monitor.refusals")


class StoredRefusals(RefusalMemory):
    """RefusalMemory whose `put` also writes to the state database; never raises."""

    def __init__(self, state_dir: Path | None, initial: dict[str, str]) -> None:
        super().__init__(initial)
        self._state_dir = state_dir
        self._warned = False

    @classmethod
    def open(cls, state_dir: Path) -> StoredRefusals:
        """The shapes stored in `state_dir` (none, in memory only, when the database cannot be used)."""
        try:
            store = Store.open(state_dir)
            try:
                return cls(state_dir, store.refusal_shapes())
            finally:
                with contextlib.suppress(StoreError):
                    store.close()
        except StoreError as exc:
            log.warning("refusals.unavailable", error=str(exc), kept="in memory until the next restart")
            return cls(None, {})

    def put(self, key: str, value: str) -> None:
        """Remember the shape, and save it (a failed write is logged once and the shape stays in memory)."""
        known = self.get(key)
        super().put(key, value)
        if self._state_dir is None or known == value:
            return
        try:
            store = Store.open(self._state_dir)
            try:
                store.save_refusal_shape(key, value)
            finally:
                with contextlib.suppress(StoreError):
                    store.close()
        except StoreError as exc:
            if not self._warned:
                self._warned = True
                log.warning("refusals.unsaved", error=str(exc), kept="in memory until the next restart")

    def close(self) -> None:
        """Stop writing to the state database (nothing is held open between writes)."""
        self._state_dir = None
