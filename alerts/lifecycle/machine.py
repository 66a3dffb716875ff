"""The pure alert state machine: `step(state, observation, now, policy) -> (state, actions)`; no I/O, no clock.

Lifecycle per alert instance: inactive -> pending -> firing -> (resolved) inactive.
- `failure_threshold` consecutive BAD observations fire (a `confirmed` one fires at once: the result is proof
  enough, e.g. ten minutes of 429s); a GOOD one while pending drops back (a blip never
  pages); `success_threshold` consecutive GOOD ones resolve.
- Reminders no more often than `repeat_interval`.
- Flapping: more than `flap_max` firing edges (fired or resolved) within `flap_window` -> one FLAPPING action,
  then the alert is held firing and no edge is paged until the underlying condition has been steady for a
  whole window; then it resolves (if good) or simply stays firing (if bad). `flap_hold` says so in words, with
  the earliest moment the hold can end.
- `silenced` (a maintenance window) holds reminders back and marks firing and flapping actions `silenced` (logged,
  not sent); it never changes the state. A resolution is always notified when the firing was, so nothing
  stays open in a pager.
Imports nothing but the model: the rules and the config stay outside.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.model import Event, Observation, Signal


class Status(enum.StrEnum):
    """Where an alert instance is in its lifecycle."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


@dataclass(frozen=True, slots=True)
class Policy:
    """The timing of one check's alerts, plus whether a maintenance window is open right now."""

    failure_threshold: int = 2
    success_threshold: int = 2
    repeat_interval: float = 4 * 3600.0
    flap_window: float = 600.0
    flap_max: int = 6
    silenced: bool = False


@dataclass(frozen=True, slots=True)
class AlertState:
    """Everything known about one alert instance; persisted as JSON (see to_dict/from_dict)."""

    key: str
    alertname: str
    check: str
    status: Status = Status.INACTIVE
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    bad_streak: int = 0
    good_streak: int = 0
    since: float = 0.0
    started_at: float | None = None
    notified: bool = False
    last_notified_at: float | None = None
    edges: tuple[float, ...] = ()
    flapping: bool = False
    flap_changes: int = 0
    """How many state changes (fired or resolved) within the window started the flapping (0: not flapping)."""
    raw_bad: bool = False
    raw_changed_at: float = 0.0
    held: bool = False
    """The firing went only to sinks that inhibit on their own (Alertmanager): a check it depends on is failing,
    or had not been seen since this one failed (the engine sets and clears it; the machine never looks)."""
    release_at: float | None = None
    """A held alert with no news of its root by then is released to the direct sinks."""
    outage: bool = False
    """Held behind a root's outage: only this check's first result after the roots recovered releases it (still
    failing) or drops it (alerts.lifecycle.hold); no timer does."""

    @property
    def active(self) -> bool:
        """Pending or firing."""
        return self.status is not Status.INACTIVE

    @property
    def disposable(self) -> bool:
        """Whether the state carries nothing worth keeping (inactive, no recent edges)."""
        return self.status is Status.INACTIVE and not self.edges and not self.flapping

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        out["labels"], out["annotations"] = dict(self.labels), dict(self.annotations)
        out["edges"] = list(self.edges)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AlertState:
        """Read back what to_dict wrote."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in raw.items() if k in names}
        values["status"] = Status(values.get("status", "inactive"))
        values["edges"] = tuple(values.get("edges", ()))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Hold:
    """Why an alert is held, in words, and the earliest moment the hold can end (None: when something not known
    yet happens, e.g. a failing check recovers)."""

    until: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class Action:
    """One consequence of a step: notify `event` with the state after the step; a `silenced` one (a maintenance
    window is open) is logged, not sent."""

    event: Event
    state: AlertState
    at: float
    silenced: bool = False


def step(state: AlertState, obs: Observation, now: float, policy: Policy) -> tuple[AlertState, list[Action]]:
    """Advance one alert instance by one observation; pure."""
    bad = obs.signal is Signal.BAD
    s = state
    s = dataclasses.replace(
        s,
        bad_streak=s.bad_streak + 1 if bad else 0,
        good_streak=0 if bad else s.good_streak + 1,
        edges=tuple(t for t in s.edges if now - t < policy.flap_window),
    )
    if bad and s.status is not Status.INACTIVE:
        s = dataclasses.replace(s, annotations=dict(obs.annotations))
    if s.flapping:
        return _step_flapping(s, bad, now, policy)

    if s.status is Status.INACTIVE:
        if not bad:
            return s, []
        s = dataclasses.replace(
            s, status=Status.PENDING, since=now, started_at=now, labels=dict(obs.labels),
            annotations=dict(obs.annotations), notified=False, last_notified_at=None,
        )
        if s.bad_streak >= policy.failure_threshold or obs.confirmed:
            return _fire(s, now, policy)
        return s, []

    if s.status is Status.PENDING:
        if not bad:
            return _reset(s, now), []
        if s.bad_streak >= policy.failure_threshold or obs.confirmed:
            return _fire(s, now, policy)
        return s, []

    # FIRING
    if bad:
        if not s.notified and not policy.silenced:
            # The firing edge fell in a maintenance window that has ended since: page now.
            s = dataclasses.replace(s, notified=True, last_notified_at=now)
            return s, [Action(Event.FIRING, s, now)]
        if s.notified and not policy.silenced and s.last_notified_at is not None \
                and now - s.last_notified_at >= policy.repeat_interval:
            s = dataclasses.replace(s, last_notified_at=now)
            return s, [Action(Event.REMINDER, s, now)]
        return s, []
    if s.good_streak < policy.success_threshold:
        return s, []
    edges = (*s.edges, now)
    if len(edges) > policy.flap_max:
        return _start_flapping(dataclasses.replace(s, edges=edges), raw_bad=False, now=now, policy=policy)
    return _resolve(dataclasses.replace(s, edges=edges), now)


def flap_hold(state: AlertState, policy: Policy) -> Hold | None:
    """Why a flapping alert stays firing and when it can settle at the earliest: a whole `flap_window` after its
    condition last changed (`raw_changed_at`); None when it is not flapping. Pure, like `step`."""
    if not state.flapping:
        return None
    window = _span(policy.flap_window)
    changes = (f"{state.flap_changes} state changes" if state.flap_changes
               else f"more than {policy.flap_max} state changes")
    return Hold(state.raw_changed_at + policy.flap_window,
                f"flapping: {changes} in {window}; held firing until the check is steady for {window}")


def _span(seconds: float) -> str:
    """A window as people say it: `10 min`, `1 h`, `90 s`."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _fire(s: AlertState, now: float, policy: Policy) -> tuple[AlertState, list[Action]]:
    edges = (*s.edges, now)
    s = dataclasses.replace(s, status=Status.FIRING, since=now, edges=edges)
    if len(edges) > policy.flap_max:
        return _start_flapping(s, raw_bad=True, now=now, policy=policy)
    if policy.silenced:
        return s, [Action(Event.FIRING, s, now, silenced=True)]
    s = dataclasses.replace(s, notified=True, last_notified_at=now)
    return s, [Action(Event.FIRING, s, now)]


def _start_flapping(s: AlertState, *, raw_bad: bool, now: float, policy: Policy) -> tuple[AlertState, list[Action]]:
    s = dataclasses.replace(s, status=Status.FIRING, flapping=True, flap_changes=len(s.edges), raw_bad=raw_bad,
                            raw_changed_at=now)
    if policy.silenced:
        return s, [Action(Event.FLAPPING, s, now, silenced=True)]
    s = dataclasses.replace(s, notified=True, last_notified_at=now)
    return s, [Action(Event.FLAPPING, s, now)]


def _step_flapping(s: AlertState, bad: bool, now: float, policy: Policy) -> tuple[AlertState, list[Action]]:
    raw_bad = s.raw_bad
    if bad and not raw_bad and s.bad_streak >= policy.failure_threshold:
        s = dataclasses.replace(s, raw_bad=True, raw_changed_at=now)
    elif not bad and raw_bad and s.good_streak >= policy.success_threshold:
        s = dataclasses.replace(s, raw_bad=False, raw_changed_at=now)
    if now - s.raw_changed_at < policy.flap_window:
        return s, []
    # Settled: steady for a whole window.
    s = dataclasses.replace(s, flapping=False, flap_changes=0, edges=())
    if s.raw_bad:
        if not s.notified and not policy.silenced:
            s = dataclasses.replace(s, notified=True, last_notified_at=now)
            return s, [Action(Event.FIRING, s, now)]
        return s, []
    return _resolve(s, now)


def _resolve(s: AlertState, now: float) -> tuple[AlertState, list[Action]]:
    was_notified = s.notified
    s = dataclasses.replace(s, status=Status.INACTIVE, since=now)
    actions = [Action(Event.RESOLVED, s, now)] if was_notified else []
    return dataclasses.replace(s, notified=False, last_notified_at=None), actions


def _reset(s: AlertState, now: float) -> AlertState:
    return dataclasses.replace(s, status=Status.INACTIVE, since=now, started_at=None, notified=False,
                               last_notified_at=None)
