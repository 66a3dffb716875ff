"""Kind `heartbeat`: a job reports to the daemon (`/heartbeat/<check>`, monitor/heartbeat.py); no call within
`interval` + `grace` of the last one, or a call to `/fail`, is `heartbeat_missed`.

The book of calls (`HeartbeatBook`) is the daemon's, shared by its HTTP thread (which writes it) and the probe
(which reads it), kept across reloads and, through monitor/heartbeat.py's table, across restarts. The probe sends
nothing: it judges the book against the clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from monitor.core.config import HeartbeatCheck
from monitor.core.results import Outcome, ProbeResult
from probes.deps import Deps
from probes.kind import Kind

BOOK = "heartbeat/book"
"""The key of the daemon's HeartbeatBook in `Deps.resources`."""


@dataclass(frozen=True, slots=True)
class Beat:
    """What is known about one heartbeat check's calls (Unix times)."""

    first_seen: float  # when a daemon first watched the check (a job that never calls is missed from here)
    last_ping: float | None = None
    failed_at: float | None = None  # the last call to /fail
    message: str = ""  # what that call said (bounded and redacted by the endpoint)


class HeartbeatBook:
    """The calls of every heartbeat check, safe to use from the server's thread and the daemon's loop.

    `on_change(check, beat)` is told of every change (the daemon saves it); `started` is when this process began
    watching, so a restart gives each job at least `grace` before a miss is judged.
    """

    def __init__(self, clock: Callable[[], float], on_change: Callable[[str, Beat], None] | None = None, *,
                 started: float | None = None) -> None:
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._beats: dict[str, Beat] = {}
        # A one-off reader (`pam-monitor check`) passes -inf: it judges the saved calls without a restart's grace.
        self.started = clock() if started is None else started

    def persist_with(self, on_change: Callable[[str, Beat], None] | None) -> None:
        """Tell `on_change` of every change from now on (the daemon's table, once it is open)."""
        self._on_change = on_change

    def load(self, beats: Mapping[str, Beat]) -> None:
        """Adopt beats saved by an earlier process."""
        with self._lock:
            self._beats.update(beats)

    def watch(self, checks: Iterable[str]) -> None:
        """Start watching these checks (a new one is 'first seen' now)."""
        now = self._clock()
        for name in checks:
            with self._lock:
                if name in self._beats:
                    continue
                beat = self._beats[name] = Beat(first_seen=now)
            self._changed(name, beat)

    def ping(self, check: str) -> Beat:
        """Record a good call now."""
        return self._record(check, lambda b, now: replace(b, last_ping=now))

    def fail(self, check: str, message: str) -> Beat:
        """Record a call to /fail now, with its message."""
        return self._record(check, lambda b, now: replace(b, failed_at=now, message=message))

    def get(self, check: str) -> Beat | None:
        """What is known about a check (None: never watched)."""
        with self._lock:
            return self._beats.get(check)

    def _record(self, check: str, change: Callable[[Beat, float], Beat]) -> Beat:
        now = self._clock()
        with self._lock:
            beat = self._beats[check] = change(self._beats.get(check) or Beat(first_seen=now), now)
        self._changed(check, beat)
        return beat

    def _changed(self, check: str, beat: Beat) -> None:
        if self._on_change is not None:
            self._on_change(check, beat)


def _at(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def judge(check: HeartbeatCheck, beat: Beat | None, now: float, started: float) -> ProbeResult:
    """The verdict on one heartbeat check at `now` (pure: the probe and the tests call it).

    A call to /fail after the last good call is a failure until the next good call. Otherwise the deadline is the
    last good call (or, never called, when the check was first watched) plus `interval` + `grace`, and never
    earlier than this process's start plus `grace` (the daemon being down is not the job's miss).
    """
    beat = beat or Beat(first_seen=started)
    expected = f"expected every {_span(check.period)} + {_span(check.grace)} grace"
    details: dict[str, object] = {"last_ping": _at(beat.last_ping) if beat.last_ping is not None else None}
    if beat.failed_at is not None and (beat.last_ping is None or beat.failed_at >= beat.last_ping):
        said = f": {beat.message}" if beat.message else ""
        details["failed_at"] = _at(beat.failed_at)
        return ProbeResult(Outcome.HEARTBEAT_MISSED,
                           f"the job reported a failure {_span(now - beat.failed_at)} ago{said}", details=details)
    since = beat.last_ping if beat.last_ping is not None else beat.first_seen
    deadline = max(since + check.period + check.grace, started + check.grace)
    details["deadline"] = _at(deadline)
    if now > deadline:
        if beat.last_ping is None:
            message = f"no heartbeat since it was first watched {_span(now - beat.first_seen)} ago ({expected})"
        else:
            message = f"no heartbeat for {_span(now - beat.last_ping)}, last at {_at(beat.last_ping)} ({expected})"
        return ProbeResult(Outcome.HEARTBEAT_MISSED, message, details=details)
    if beat.last_ping is None:
        return ProbeResult(Outcome.OK, f"waiting for the first heartbeat ({expected})", details=details)
    return ProbeResult(Outcome.OK, f"last heartbeat {_span(now - beat.last_ping)} ago ({expected})", details=details)


async def probe(check: HeartbeatCheck, deps: Deps, deadline: float) -> ProbeResult:
    """Judge the daemon's book of calls (in `pam-monitor check`, the calls saved in state_dir); without one,
    say so."""
    book = deps.resources.get(BOOK)
    if not isinstance(book, HeartbeatBook):
        return ProbeResult(Outcome.INTERNAL_ERROR,
                           "heartbeat checks are judged from the calls the daemon (pam-monitor run) received, "
                           "and state_dir holds none")
    return judge(check, book.get(check.name), deps.clock.time(), book.started)


KIND = Kind(
    name="heartbeat",
    model=HeartbeatCheck,
    probe=probe,
    outcomes=(Outcome.OK, Outcome.HEARTBEAT_MISSED, Outcome.INTERNAL_ERROR),
    alerts=("HeartbeatMissed", "CheckFailed"),
)
