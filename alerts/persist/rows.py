"""Reading stored rows back strictly: a row of the wrong shape (bad JSON, wrong types, an impossible time) is
`Unreadable`, to quarantine, rather than an exception later in a delivery lane."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerts.lifecycle.machine import AlertState
from alerts.model import CheckMemory, Notification

PARSE_ERRORS = (ValueError, TypeError, KeyError, AttributeError)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One undelivered notification for one delivery lane (one URL of a sink: `<sink>#<index>`)."""

    id: int
    lane: str
    notification: Notification
    attempts: int
    next_attempt_at: float
    created_at: float


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A stored row that cannot be read back: which table, its id or key, its raw body, and why."""

    source: str
    ref: str
    body: str | None
    reason: str
    lane: str | None = None



def parsed(source: str, rows: Sequence[tuple[Any, ...]], parse: Callable[[str, str], Any],
            bad: list[Unreadable]) -> Iterator[tuple[str, Any]]:
    """(key, value) of each row `parse` can read; the others are appended to `bad`."""
    for key, body in rows:
        try:
            yield key, parse(key, body)
        except PARSE_ERRORS as exc:
            bad.append(Unreadable(source, str(key), text(body), why(exc)))


def state(key: str, body: str) -> AlertState:
    """An alert_state row, checked field by field."""
    raw = json.loads(body)
    state = AlertState.from_dict(raw)
    _strings(state.labels, "labels")
    _strings(state.annotations, "annotations")
    if not (isinstance(state.key, str) and state.key == key and isinstance(state.check, str)):
        raise ValueError("key or check is not the row's")
    return state


def memory(key: str, body: str) -> CheckMemory:
    """A check_memory row."""
    memory = CheckMemory.from_json(body)
    if not isinstance(key, str) or not isinstance(memory.steps, dict):
        raise ValueError("steps is not a mapping")
    return memory


def outbox_row(raw: tuple[Any, ...]) -> OutboxRow:
    """An outbox row (id, lane, body, attempts, next_attempt_at, created_at), checked field by field."""
    row_id, lane, body, attempts, next_at, created = raw
    if not (isinstance(row_id, int) and isinstance(lane, str) and "#" in lane and isinstance(attempts, int)):
        raise ValueError("id, lane or attempts has the wrong type")
    note = Notification.from_json(body)
    _strings(note.labels, "labels")
    _strings(note.annotations, "annotations")
    if not isinstance(note.key, str):
        raise ValueError("key is not text")
    times = (note.starts_at, note.at, note.ends_at or 0.0, float(next_at), float(created))
    if not all(math.isfinite(t) and abs(t) < 1e11 for t in times):
        raise ValueError("a time is not a finite epoch")
    return OutboxRow(row_id, lane, note, attempts, float(next_at), float(created))


def _strings(mapping: Mapping[str, str], what: str) -> None:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ValueError(f"{what} are not all text")


def text(body: object) -> str | None:
    """A raw column as text, for the quarantine table."""
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return body if isinstance(body, str) else None if body is None else str(body)


def why(exc: Exception) -> str:
    """Why a row could not be read, short."""
    return f"{type(exc).__name__}: {exc}"[:200]
