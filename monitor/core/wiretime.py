"""Wire time: how much of a timed-out request's budget a run spent inside pam-monitor before the request reached
the network. The runner opens the account for each run (`watch_wire`); the probes' HTTP layer reports into it
(`current_wire`). Here, on the floor, because both sides use it and probes stand on monitor.core only."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator


class Wire:
    """How much of a timed-out request's budget one run spent inside pam-monitor before the request reached the
    network (waiting for one of the resolver's threads, or behind a busy event loop).

    The runner opens one per run (`watch_wire`); `_http.fetch` reports every request that timed out, with the
    moment the transport saw it reach the wire (`probes.wire.Trace.wire_at`). A timeout counts only time on the
    wire: a request that reached it late, or never, timed out because of the monitor.
    """

    def __init__(self) -> None:
        self.lost = 0.0
        """The largest share (0 to 1) of a timed-out request's budget spent before it was on the wire."""
        self.exhaustion: str | None = None
        """What of pam-monitor's own ran out (file descriptors, ports...) before a request reached the target."""

    def exhausted(self, cause: str) -> None:
        """A request could not start for want of the monitor's own resources (probes._errors.LocalExhausted)."""
        self.exhaustion = self.exhaustion or cause

    def timed_out(self, started: float, on_wire: float | None, deadline: float) -> None:
        """A request started at `started` (event-loop time) timed out at `deadline`; it reached the wire at
        `on_wire` (None: never)."""
        budget = deadline - started
        spent = (deadline if on_wire is None else on_wire) - started
        share = 1.0 if budget <= 0 else min(1.0, max(0.0, spent / budget))
        self.lost = max(self.lost, share)


_WIRE: contextvars.ContextVar[Wire | None] = contextvars.ContextVar("pam_monitor_wire", default=None)


@contextlib.contextmanager
def watch_wire() -> Iterator[Wire]:
    """Collect, for the run in this task (and the tasks it starts), how late its timed-out requests reached the
    wire. A context variable, so no probe signature carries it."""
    wire = Wire()
    token = _WIRE.set(wire)
    try:
        yield wire
    finally:
        _WIRE.reset(token)


def current_wire() -> Wire | None:
    """The running run's Wire, or None outside a runner (a probe called directly)."""
    return _WIRE.get()


