"""One outage, one page: a dependent's alerts are held back from direct sinks while a check it depends on fails.

A check's roots are its `depends_on` plus its target's `health_check` (monitor.core.config.dependencies). When a
dependent's alert fires, sinks that inhibit on their own (Alertmanager, told by `depends_on` and `target` labels)
get it at once; direct sinks (PagerDuty, Slack, webhooks) get it only when `verdict()` says SEND:
- a root's latest result failed: HOLD (the root's alert pages, and lists the alerts begun during its outage); the
  engine presents a root that fails without an alert of its own (its rules disabled) as passing: it holds
  nothing back;
- a root has no result that started after this check's current failing outcome began: WAIT for it, at most until
  `release_at` (the root's interval + timeout after the dependent first failed), then SEND;
- a root recovered (or was first seen) after this check's latest failing run started: HOLD;
- otherwise SEND.
An alert once HOLD is an outage's: the engine marks it (`AlertState.outage`) and no timer and no root result
releases it. The roots' recovery ends the hold whatever the dependent's results were meanwhile (inconclusive ones
included): the dependent's first result that started after every root was seen passing again (`fresh()`) decides.
Still BAD for the alert: it is sent then (its own problem); anything else (good, or saying nothing of it): it is
dropped, resolved where it was sent (Alertmanager) and never sent to the direct sinks.

While a root fails, the dependent's alerts that began before the outage (`pre_existing()`) are suspended: the
outage's results of the dependent neither resolve nor re-fire them, and `also_failing` lists only alerts begun
during the outage. A held alert that resolves sends no resolution to the direct sinks (they never got its firing).
Pure: the engine keeps what it has seen, asks for verdicts and routes notifications by them.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from monitor.core.config import Config, dependencies
from monitor.core.results import Outcome, Result

_ANSWERED = frozenset({Outcome.OK, Outcome.SLOW})
_LIMIT = 1000


class Verdict(enum.Enum):
    """Whether a dependent's firing may go to the direct sinks now."""

    SEND = "send"
    HOLD = "hold"
    WAIT = "wait"


_NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class Seen:
    """A check's latest conclusive result as its dependents see it.

    Run times (the results' clock): `at` when that run started, `since` when the current spell (failing or
    passing) began, `changed` when its current outcome began. Engine times (when the engine observed them, the
    clock alert states are kept on, so they compare with an alert's `started_at`): `seen_at` (the latest),
    `since_seen` (the spell's first), `changed_seen` (the outcome's first), `good_seen` (the latest passing one;
    -inf: none seen), `outage` (when its latest failing spell began for its dependents: the `good_seen` before
    it; -inf: not known, the spell began before the engine started)."""

    at: float
    failing: bool
    since: float
    changed: float = _NEVER
    outcome: str = ""
    seen_at: float = _NEVER
    since_seen: float = _NEVER
    changed_seen: float = _NEVER
    good_seen: float = _NEVER
    outage: float = _NEVER


def seen_after(previous: Seen | None, result: Result, now: float | None = None) -> Seen | None:
    """What is known of a check after one more result, observed by the engine at `now` (default: when the run
    finished); `rate_limited` is inconclusive and changes nothing."""
    if result.outcome is Outcome.RATE_LIMITED:
        return previous
    now = result.finished_at if now is None else now
    failing = result.outcome not in _ANSWERED
    outcome, started = result.outcome.value, result.started_at
    if previous is None:
        return Seen(started, failing, started, started, outcome, now, now, now, _NEVER if failing else now, _NEVER)
    same = previous.outcome == outcome
    changed, changed_seen = (previous.changed, previous.changed_seen) if same else (started, now)
    good_seen = previous.good_seen if failing else now
    if previous.failing == failing:
        return Seen(started, failing, previous.since, changed, outcome, now, previous.since_seen, changed_seen,
                    good_seen, previous.outage)
    outage = previous.good_seen if failing else previous.outage
    return Seen(started, failing, started, changed, outcome, now, now, changed_seen, good_seen, outage)


def verdict(own: Seen | None, roots: Sequence[Seen | None], *, now: float, release_at: float | None,
            started_at: float | None = None) -> Verdict:
    """May a dependent's firing go to the direct sinks now? `own` is the dependent, `roots` its roots (None: not
    seen since the engine started), `started_at` when the alert began (engine time: what counts when the
    dependent's latest conclusive result is not a failure, e.g. a CheckFailed raised by a long rate-limited
    spell)."""
    if any(root is not None and root.failing for root in roots):
        return Verdict.HOLD
    waiting = False
    for root in roots:
        if root is None:
            waiting = True
        elif own is not None and own.failing:
            if root.at < own.changed:
                waiting = True  # no news of the root since this check's failing outcome began
            elif own.at < root.since:
                return Verdict.HOLD  # the root recovered (or was first seen) after this check's latest failing run
        elif started_at is not None:
            if root.seen_at < started_at:
                waiting = True  # no news of the root since the alert began
            elif started_at < root.since_seen:
                return Verdict.HOLD  # the root recovered (or was first seen) after the alert began
    if waiting:
        return Verdict.SEND if release_at is not None and now >= release_at else Verdict.WAIT
    return Verdict.SEND


def recovered(roots: Sequence[Seen | None]) -> float | None:
    """When every root was last seen passing again (the latest start of their passing spells); None while one
    fails or has not been seen since the engine started."""
    if not roots or any(root is None or root.failing for root in roots):
        return None
    return max(root.since for root in roots if root is not None)


def fresh(started_at: float, roots: Sequence[Seen | None]) -> bool:
    """Whether a dependent's run that started at `started_at` is news after its roots' outage: every root is
    passing and the run began once they all were (a run begun during the outage proves nothing)."""
    back = recovered(roots)
    return back is not None and started_at >= back


def outage_start(root: Seen | None) -> float:
    """When a root's latest failing spell began for its dependents (engine time): when its last passing result
    was observed (-inf: not known; every alert counts as begun during the outage)."""
    if root is None:
        return _NEVER
    return root.good_seen if root.failing else root.outage


def pre_existing(started_at: float | None, own: Seen | None, roots: Sequence[Seen | None], *, failed: bool,
                 now: float, bound: float) -> bool:
    """Whether an active alert of a dependent, begun at `started_at` (engine time), is suspended for this result
    of it: it began before a failing root's outage, or (for a failing result) before the dependent's outcome
    changed while a root has not been seen since (at most `bound` seconds: the wait for the root's next result)."""
    if started_at is None:
        return False
    for root in roots:
        if root is not None and root.failing:
            began = outage_start(root)
            if started_at < (began if began != _NEVER else root.since_seen):
                return True
        elif failed and own is not None and now < own.changed_seen + bound and started_at < own.changed_seen \
                and (root is None or root.at < own.changed):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Graph:
    """Who depends on whom among the enabled checks."""

    roots: Mapping[str, tuple[str, ...]]
    """A dependent -> the checks it depends on."""
    dependents: Mapping[str, tuple[str, ...]]
    """A root -> the checks that depend on it directly."""
    below: Mapping[str, tuple[str, ...]]
    """A root -> every check that depends on it, directly or through another (listed on its alerts)."""
    bound: Mapping[str, float]
    """A dependent -> how long to wait for news of its roots: the longest root interval + timeout."""

    def tracked(self, check: str) -> bool:
        """Whether the check is a root or a dependent (whose results the engine must keep)."""
        return check in self.roots or check in self.dependents


def graph(config: Config, enabled: Collection[str]) -> Graph:
    """The dependency graph of a config, restricted to enabled checks (a disabled root holds nothing back)."""
    checks = {c.name: c for c in config.checks}
    roots = {
        name: live for name, named in dependencies(config).items()
        if name in enabled and (live := tuple(r for r in named if r in enabled))
    }
    dependents: dict[str, list[str]] = {}
    for name, named in roots.items():
        for root in named:
            dependents.setdefault(root, []).append(name)
    below: dict[str, tuple[str, ...]] = {}
    for root in dependents:
        found: dict[str, None] = {}
        stack = list(dependents[root])
        while stack:
            name = stack.pop()
            if name in found or name == root:
                continue
            found[name] = None
            stack.extend(dependents.get(name, ()))
        below[root] = tuple(sorted(found))
    bound = {name: max(checks[r].interval + checks[r].timeout for r in named) for name, named in roots.items()}
    return Graph(roots, {k: tuple(sorted(v)) for k, v in dependents.items()}, below, bound)


def also_failing(entries: Iterable[tuple[str, str, str]]) -> str:
    """The root alert's `also_failing` annotation from (target, check, alertname) of the dependents' active alerts:
    `also failing on target backend: settings_get_unauth (EndpointDown), ...` ("" when there is none)."""
    by_target: dict[str, dict[str, list[str]]] = {}
    for target, check, alertname in sorted(entries):
        by_target.setdefault(target, {}).setdefault(check, []).append(alertname)
    parts = [
        f"on target {target}: " + ", ".join(f"{check} ({', '.join(names)})" for check, names in checks.items())
        for target, checks in by_target.items()
    ]
    if not parts:
        return ""
    text = "also failing " + "; ".join(parts)
    return text if len(text) <= _LIMIT else text[: _LIMIT - 3] + "..."
