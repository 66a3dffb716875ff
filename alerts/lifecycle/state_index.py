"""The engine's alert states in memory, indexed by key, by check and by whether they are held."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from alerts.lifecycle.machine import AlertState
from alerts.lifecycle.plan import Batch, Plan


class StateIndex:
    """Every alert state by key; the same by check then key (a result touches only its own check's states); the
    keys of held firing alerts (the direct sinks have not been told about them)."""

    def __init__(self) -> None:
        self.states: dict[str, AlertState] = {}
        self.by_check: dict[str, dict[str, AlertState]] = {}
        self.held: set[str] = set()

    def reset(self, states: Mapping[str, AlertState]) -> None:
        """Hold exactly these states."""
        self.states, self.by_check, self.held = {}, {}, set()
        for state in states.values():
            self.put(state)

    def put(self, state: AlertState) -> None:
        """Add or replace one state."""
        self.states[state.key] = state
        self.by_check.setdefault(state.check, {})[state.key] = state
        if state.held:
            self.held.add(state.key)
        else:
            self.held.discard(state.key)

    def drop(self, key: str) -> None:
        """Forget one state."""
        state = self.states.pop(key)
        self.held.discard(key)
        mine = self.by_check[state.check]
        del mine[key]
        if not mine:
            del self.by_check[state.check]

    def keep(self, stored: AlertState | None, new: AlertState, batch: Batch) -> None:
        """Record a changed state (or drop one with nothing worth keeping) here and in the batch."""
        if new.disposable:
            if stored is not None:
                self.drop(new.key)
                batch.deleted.append(new.key)
                batch.changed.pop(new.key, None)
        else:
            self.put(new)
            batch.changed[new.key] = new

    def active_in(self, checks: Iterable[str], plans: Mapping[str, Plan]) -> Iterator[tuple[str, str, str]]:
        """(target, check, alertname) of every active alert of these checks (those still configured)."""
        for name in checks:
            if name in plans:
                target = plans[name].check.target
                yield from ((target, name, d.alertname) for d in self.by_check.get(name, {}).values() if d.active)
