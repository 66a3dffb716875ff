"""One outage, one page: a dependent's alerts are held back from direct sinks while a check it depends on fails.

A check's roots are its `depends_on` plus its target's `health_check` (monitor.core.config.dependencies). When a
dependent's alert fires, sinks that inhibit on their own (Alertmanager, told by `depends_on` and `target` labels)
get it at once; direct sinks (PagerDuty, Slack, webhooks) get it only when `verdict()` says SEND:
- a root's latest result failed: HOLD (the root's alert pages, and lists the held dependents); the engine
  presents a root that fails without an alert of its own (its rules disabled) as passing: it holds nothing back;
- a root has no result that started after this check's failing spell began: WAIT for it, at most until
  `release_at` (the root's interval + timeout after the dependent first failed), then SEND;
- a root recovered after this check's latest failing run started: HOLD until this check runs again; still
  failing then, it is its own problem: SEND;
- otherwise SEND.
A held alert that resolves sends no resolution to the direct sinks (they never got its firing). Pure: the engine
keeps what it has seen, asks for verdicts and routes notifications by them.
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


@dataclass(frozen=True, slots=True)
class Seen:
    """A check's latest conclusive result as its dependents see it: when that run started, whether it failed, and
    when the current spell (failing or passing) began (run start times)."""

    at: float
    failing: bool
    since: float


def seen_after(previous: Seen | None, result: Result) -> Seen | None:
    """What is known of a check after one more result; `rate_limited` is inconclusive and changes nothing."""
    if result.outcome is Outcome.RATE_LIMITED:
        return previous
    failing = result.outcome not in _ANSWERED
    if previous is not None and previous.failing == failing:
        return Seen(result.started_at, failing, previous.since)
    return Seen(result.started_at, failing, result.started_at)


def verdict(own: Seen | None, roots: Sequence[Seen | None], *, now: float, release_at: float | None) -> Verdict:
    """May a dependent's firing go to the direct sinks now? `own` is the dependent, `roots` its roots (None: not
    seen since the engine started)."""
    if any(root is not None and root.failing for root in roots):
        return Verdict.HOLD
    if own is None or not own.failing:
        return Verdict.HOLD  # not seen failing since a restart, or recovering: its own next result decides
    waiting = False
    for root in roots:
        if root is None or root.at < own.since:
            waiting = True  # no news of the root since this check began to fail
        elif own.at < root.since:
            return Verdict.HOLD  # the root recovered after this check's latest failing run began
    if waiting:
        return Verdict.SEND if release_at is not None and now >= release_at else Verdict.WAIT
    return Verdict.SEND


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
