"""What the daemon knows right now: the last results of each check, readiness and scheduler liveness."""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from monitor.core.clock import iso
from monitor.core.results import Outcome, Result

AlertsProvider = Callable[[], list[dict[str, Any]]]
HISTORY_LENGTH = 20
"""How many recent outcomes /status keeps per check (a bounded ring: memory stays flat however long it runs)."""


_OUTCOMES: tuple[Outcome, ...] = tuple(Outcome)
_INDEX: dict[Outcome, int] = {outcome: i for i, outcome in enumerate(_OUTCOMES)}


class History:
    """The last HISTORY_LENGTH (outcome, finished_at) of one check, oldest first.

    Kept as two small arrays (outcome numbers, times) rather than a deque of tuples: 1,000 checks hold 20,000
    entries, and a deque of tuples costs ~1.5 KB a check where the arrays cost ~0.4 KB.
    """

    __slots__ = ("_outcomes", "_times")

    def __init__(self) -> None:
        self._outcomes = array("B")
        self._times = array("d")

    def append(self, outcome: Outcome, finished_at: float) -> None:
        """Add the newest entry, dropping the oldest past HISTORY_LENGTH."""
        if len(self._times) >= HISTORY_LENGTH:
            del self._outcomes[0]
            del self._times[0]
        self._outcomes.append(_INDEX[outcome])
        self._times.append(finished_at)

    def clear(self) -> None:
        """Forget every entry."""
        del self._outcomes[:]
        del self._times[:]

    def __len__(self) -> int:
        return len(self._times)

    def __iter__(self) -> Iterator[tuple[Outcome, float]]:
        return zip([_OUTCOMES[i] for i in self._outcomes], self._times, strict=True)


class State:
    """Last results per check plus the facts /healthz and /readyz report.

    Mutated on the event loop, read by the HTTP server's own thread: writers and readers take a lock only long
    enough to copy references, never while building a document.
    """

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # Per check: its status-page, runbook and dashboard links (alerts.links.check_links), set by the daemon.
        self.links: Mapping[str, Mapping[str, str]] = {}
        # Per check: availability and latency over 1h/24h/7d/30d and a 30-day strip (monitor/history.py).
        self.over_time: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
        # Every SLO's error budget left (monitor/slo.py), when the config has SLOs and a history.
        self.slos: Callable[[], list[dict[str, Any]]] | None = None
        self.results: dict[str, Result] = {}
        self.kinds: dict[str, str] = {}
        self.intervals: dict[str, float] = {}
        self.history: dict[str, History] = {}
        self.order: list[str] = []
        self.config_loaded = False
        self.last_tick: float | None = None
        self.alerts: AlertsProvider = list
        self.persistence: Callable[[], str | None] = lambda: None
        """None while alert state is being saved, else why not (the alert engine sets it)."""

    def set_checks(self, checks: Iterable[tuple[str, str]], intervals: Mapping[str, float] | None = None) -> None:
        """Declare the running checks (name, kind) and their intervals in seconds; results and history of checks
        that remain (same name, same kind) are kept."""
        pairs = list(checks)
        with self._lock:
            self.order = [name for name, _ in pairs]
            self.kinds = dict(pairs)
            self.intervals = {name: float(intervals[name]) for name in self.order if intervals and name in intervals}
            self.results = {
                name: result for name, result in self.results.items()
                if name in self.kinds and self.kinds[name] == result.kind
            }
            old = self.history
            self.history = {name: old[name] if name in old else History() for name in self.order}
            for name in self.order:
                if name not in self.results:
                    self.history[name].clear()
            self.config_loaded = True

    def record(self, result: Result) -> Outcome | None:
        """Store a result; return the outcome it replaces (None for a check's first run)."""
        with self._lock:
            previous = self.results.get(result.check)
            if result.check in self.kinds:
                self.results[result.check] = result
                self.history[result.check].append(result.outcome, result.finished_at)
        return previous.outcome if previous is not None else None

    def tick(self) -> None:
        """The scheduler's heartbeat job calls this every second."""
        self.last_tick = self._monotonic()

    def healthy(self, max_silence: float) -> tuple[bool, str]:
        """Alive means the scheduler ticked within `max_silence` seconds."""
        if self.last_tick is None:
            return False, "scheduler has not ticked yet"
        silence = self._monotonic() - self.last_tick
        if silence > max_silence:
            return False, f"scheduler silent for {silence:.1f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Ready means a config is loaded, alert state is being saved, and every check has finished at least one
        run."""
        with self._lock:
            loaded, order, done = self.config_loaded, self.order, set(self.results)
        if not loaded:
            return False, "no configuration loaded"
        problem = self.persistence()
        if problem is not None:
            return False, problem
        waiting = [name for name in order if name not in done]
        if waiting:
            return False, f"{len(waiting)} of {len(order)} checks have not run yet"
        return True, "ok"

    def status(self, alerts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The /status document plus, per check, `interval_s` (the interval it really runs at: its
        own, or stretched to keep its target's max_rate) and `history` (the last HISTORY_LENGTH
        `{outcome, finished_at}`, oldest first). `alerts` defaults to the `alerts` provider's. Holds no secret:
        the runner redacts results."""
        with self._lock:
            order, kinds, intervals = self.order, self.kinds, self.intervals
            results = dict(self.results)
            history = {name: tuple(self.history.get(name, ())) for name in order}
        checks: list[dict[str, Any]] = []
        over_time = self.over_time() if self.over_time is not None else {}
        for name in order:
            result = results.get(name)
            if result is None:
                entry: dict[str, Any] = {
                    "name": name, "kind": kinds.get(name), "outcome": None, "success": None,
                    "status_code": None, "duration_s": None, "message": "not run yet", "finished_at": None,
                }
            else:
                entry = result.to_status()
            entry["interval_s"] = intervals.get(name)
            entry.update(self.links.get(name, {}))  # status_url, runbook_url, dashboard_url (alerts/links.py)
            if self.over_time is not None:
                entry["over_time"] = over_time.get(name)
            entry["history"] = [
                {"outcome": outcome.value, "finished_at": iso(finished_at)} for outcome, finished_at in history[name]
            ]
            checks.append(entry)
        doc = {"checks": checks, "alerts": self.alerts() if alerts is None else alerts}
        if self.slos is not None:
            doc["slos"] = self.slos()
        return doc
