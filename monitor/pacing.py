"""Pacing: a target's `max_rate` is kept by stretching its checks' intervals, never by failing runs; extra runs
(confirmations, early runs of root checks) spend from a share of it reserved for them, so a confirmation runs
`confirm_delay` after a failure, not at the next paced slot, and cannot feed an overload.

- Each check sends `Kind.requests(check)` requests a run. A target with `max_rate` keeps `RESERVE_SHARE` (20 %)
  of it, and at least `RESERVE_MIN_PER_MIN` request a minute (but never more than half), for extra runs; if its
  checks would send more than the rest, every check's interval is stretched by the same factor. Logged once per
  load (`target.paced`), shown per check in /status `interval_s`.
- Every admitted scheduled run is charged to its target's scheduled bucket (rate: `max_rate` less the reserve,
  capacity `TARGET_BURST_S` seconds of it, at least one run's requests); an extra run takes its requests from
  the target's reserve bucket (capacity `RESERVE_BURST_S` seconds of the reserve, at least one run's requests)
  and is only scheduled when they are there. Scheduled runs never spend the reserve.
- Extra runs also share one budget for the whole daemon: `CONFIRM_SHARE` (10 %) of the scheduled runs per
  second (at least 1 a second), bursting to `CONFIRM_BURST_S` seconds of it (at least 10). A mass outage then
  confirms a share of its checks within seconds and the rest at their next run, instead of doubling the load.
- A target's `max_routes_per_minute` bounds how many distinct routes (a check's paths and tables; a check counts
  as its routes) pam-monitor touches on it in any `ROUTE_WINDOW_S` (60 s) window, for backends that block an IP
  touching too many routes a minute. Intervals are stretched so the scheduled runs touch at most `PACE_SHARE`
  of it a minute, and a run waits (until its admission deadline) for room in the window; a check already touched
  in the window (its confirmation) adds nothing.
- `pam-monitor check` (one round) waits for the scheduled bucket and the route window before each run of a paced
  target: slow, never over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from monitor.core.config import Check, Target

log = structlog.get_logger("pam_monitor.runner")

RESERVE_SHARE = 0.2
RESERVE_MIN_PER_MIN = 1.0
RESERVE_BURST_S = 60.0
PACE_SHARE = 1.0 - RESERVE_SHARE
TARGET_BURST_S = 6.0
ROUTE_WINDOW_S = 60.0
CONFIRM_SHARE = 0.1
CONFIRM_BURST_S = 2.0
CONFIRM_MIN_RATE = 1.0
CONFIRM_MIN_BURST = 10.0


class TokenBucket:
    """`rate` tokens a second up to `capacity`; `charge` may run it into debt (down to -capacity)."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._at = now

    def tokens(self, now: float) -> float:
        """Tokens available at `now` (negative: in debt)."""
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = max(self._at, now)
        return self._tokens

    def try_take(self, count: float, now: float) -> bool:
        """Take `count` tokens if they are there; False (and nothing taken) otherwise."""
        if self.tokens(now) < count:
            return False
        self._tokens -= count
        return True

    def charge(self, count: float, now: float) -> None:
        """Spend `count` tokens whether or not they are there (scheduled runs are paced, not refused)."""
        self._tokens = max(-self.capacity, self.tokens(now) - count)

    def wait_s(self, count: float, now: float) -> float:
        """Seconds until `count` tokens are there (0: now)."""
        missing = min(count, self.capacity) - self.tokens(now)
        return max(0.0, missing / self.rate) if self.rate > 0 else 0.0


def reserve_of(max_rate: float) -> float:
    """Requests a second of a target's max_rate kept for confirmations and early runs: RESERVE_SHARE of it, at
    least RESERVE_MIN_PER_MIN a minute, at most half of it."""
    return min(max(RESERVE_SHARE * max_rate, RESERVE_MIN_PER_MIN / 60.0), max_rate / 2)


def routes_of(check: Any, requests: int) -> int:
    """Distinct routes one run of a check touches, counted from its config: its path, its steps' and synthesis
    paths (method and path), its required tables, plus the identity's own read of a check acting as a user on
    one path; at least 1, at most one per request."""
    paths: set[tuple[str, str]] = set()
    steps = getattr(check, "steps", None) or ()
    for part in (check, getattr(check, "synthesize", None), *steps):
        path = getattr(part, "path", None)
        if isinstance(path, str):
            paths.add((str(getattr(part, "method", "GET")), path))
    count = len(paths) + len(getattr(check, "required_tables", None) or ())
    if getattr(check, "identity", None) is not None and not steps and isinstance(getattr(check, "path", None), str):
        count += 1  # the identity's own resource, read first: another concrete path
    return max(1, min(count, requests))


@dataclass(slots=True)
class RouteWindow:
    """The distinct routes touched on one target in the last `window` seconds, by the check that touched them."""

    limit: int
    window: float = ROUTE_WINDOW_S
    touched: dict[str, tuple[float, int]] = field(default_factory=dict)  # check -> (last touch, routes)

    def _expire(self, now: float) -> None:
        for name in [n for n, (at, _) in self.touched.items() if now - at >= self.window]:
            del self.touched[name]

    def count(self, now: float) -> int:
        """Distinct routes touched within the window before `now`."""
        self._expire(now)
        return sum(routes for _, routes in self.touched.values())

    def fits(self, check: str, routes: int, now: float) -> bool:
        """Whether a run of `check` (touching `routes`) keeps the window within the limit: one already counted
        adds nothing; one bigger than the limit goes alone into an empty window."""
        self._expire(now)
        if check in self.touched:
            return True
        used = sum(r for _, r in self.touched.values())
        return used + routes <= self.limit or used == 0

    def touch(self, check: str, routes: int, now: float) -> None:
        """A run of `check` was admitted (or ended) at `now`: its routes count until `window` after."""
        self.touched[check] = (now, routes)

    def wait_s(self, check: str, routes: int, now: float) -> float:
        """Seconds until a run of `check` fits (0: now)."""
        if self.fits(check, routes, now):
            return 0.0
        room = self.limit - routes
        expiring = sorted((at + self.window, r) for _, (at, r) in self.touched.items())
        used = sum(r for _, r in expiring)
        for when, r in expiring:
            used -= r
            if used <= room or used == 0:
                return max(0.0, when - now)
        return self.window


@dataclass(frozen=True, slots=True)
class Paced:
    """A target whose checks' intervals were stretched to keep its max_rate (and max_routes_per_minute)."""

    target: str
    checks: int
    demand: float  # requests a second at the configured intervals
    max_rate: float | None  # requests a second allowed (None: no max_rate, paced by its routes)
    stretch: float
    share: float = PACE_SHARE  # of max_rate kept for scheduled runs
    routes: int | None = None  # max_routes_per_minute, when it decided the stretch

    def summary(self) -> str:
        """'target backend: 193 checks would send 1,930 req/min; max_rate 50/m (80% kept for scheduled runs):
        intervals stretched x48.3'."""
        if self.routes is not None:
            return (f"target {self.target}: {self.checks} checks would touch more than {self.routes} distinct routes a "
                    f"minute (max_routes_per_minute {self.routes}): intervals stretched x{self.stretch:.1f}")
        return (f"target {self.target}: {self.checks} checks would send {self.demand * 60:,.0f} req/min; "
                f"max_rate {(self.max_rate or 0.0) * 60:,.0f}/m ({self.share:.0%} kept for scheduled runs): "
                f"intervals stretched x{self.stretch:.1f}")


class Pacing:
    """Effective intervals, requests per run and the token buckets of one loaded config."""

    def __init__(
        self,
        checks: Iterable[Check],
        targets: Mapping[str, Target],
        requests: Callable[[Any], int],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        route_window: float = ROUTE_WINDOW_S,
    ) -> None:
        self._monotonic = monotonic
        chosen = list(checks)
        self._requests = {c.name: max(1, requests(c)) for c in chosen}
        self._routes = {c.name: routes_of(c, self._requests[c.name]) for c in chosen}
        self._target = {c.name: c.target for c in chosen}
        self.intervals: dict[str, float] = {c.name: c.interval for c in chosen}
        self.paced: list[Paced] = []
        self._buckets: dict[str, TokenBucket] = {}
        self._reserve: dict[str, TokenBucket] = {}
        self._windows: dict[str, RouteWindow] = {}
        now = monotonic()
        by_target: dict[str, list[Check]] = {}
        for check in chosen:
            by_target.setdefault(check.target, []).append(check)
        for name, group in sorted(by_target.items()):
            spec = targets.get(name)
            limit = spec.max_rate if spec is not None else None
            route_limit = getattr(spec, "max_routes_per_minute", None)
            stretch, paced_by_routes = 1.0, False
            demand = sum(self._requests[c.name] / c.interval for c in group)
            share = PACE_SHARE
            if limit is not None and limit > 0:
                biggest = max(self._requests[c.name] for c in group)
                reserve = reserve_of(limit)
                share = 1.0 - reserve / limit
                scheduled = limit - reserve
                self._buckets[name] = TokenBucket(scheduled, max(float(biggest), scheduled * TARGET_BURST_S), now)
                self._reserve[name] = TokenBucket(reserve, max(float(biggest), reserve * RESERVE_BURST_S), now)
                if demand > limit - reserve:
                    stretch = demand / (limit - reserve)
            if route_limit is not None and route_limit > 0:
                self._windows[name] = RouteWindow(route_limit, route_window)
                total = sum(self._routes[c.name] for c in group)
                per_min = sum(self._routes[c.name] * ROUTE_WINDOW_S / c.interval for c in group)
                allowed = max(1.0, PACE_SHARE * route_limit)
                if total > allowed and per_min / allowed > stretch:
                    stretch, paced_by_routes = per_min / allowed, True
            if stretch <= 1.0:
                continue
            for check in group:
                self.intervals[check.name] = check.interval * stretch
            self.paced.append(Paced(name, len(group), demand, limit or None, stretch, share,
                                    route_limit if paced_by_routes else None))
        runs_per_s = sum(1.0 / i for i in self.intervals.values())
        rate = max(CONFIRM_MIN_RATE, CONFIRM_SHARE * runs_per_s)
        self._extra = TokenBucket(rate, max(CONFIRM_MIN_BURST, rate * CONFIRM_BURST_S), now)

    def announce(self) -> None:
        """Log each paced target once (`target.paced`)."""
        for paced in self.paced:
            limit = None if paced.max_rate is None else round(paced.max_rate * 60, 1)
            log.warning("target.paced", target=paced.target, checks=paced.checks,
                        requests_per_min=round(paced.demand * 60, 1), max_rate_per_min=limit,
                        max_routes_per_minute=paced.routes, stretch=round(paced.stretch, 2), summary=paced.summary())

    def interval(self, check: str) -> float:
        """The interval the check really runs at (its own, stretched if its target is paced)."""
        return self.intervals[check]

    def requests(self, check: str) -> int:
        """Requests one run of the check sends (at least 1)."""
        return self._requests.get(check, 1)

    def routes(self, check: str) -> int:
        """Distinct routes one run of the check touches (at least 1)."""
        return self._routes.get(check, 1)

    def charge(self, check: str) -> None:
        """A scheduled run of `check` was admitted: its requests are spent from its target's scheduled bucket (an
        extra run took its own from the reserve when it was allowed)."""
        bucket = self._buckets.get(self._target.get(check, ""))
        if bucket is not None:
            bucket.charge(self.requests(check), self._monotonic())

    def allow_extra(self, check: str) -> bool:
        """Whether an extra run (confirmation or early root run) of `check` fits both budgets; takes its requests
        from its target's reserve and one run from the daemon-wide budget when it does."""
        now = self._monotonic()
        reserve = self._reserve.get(self._target.get(check, ""))
        count = self.requests(check)
        if reserve is not None and reserve.tokens(now) < min(count, reserve.capacity):
            return False
        if not self._extra.try_take(1, now):
            return False
        if reserve is not None:
            reserve.charge(count, now)
        return True

    def route_wait_s(self, check: str) -> float:
        """Seconds until a run of `check` fits its target's route window (0: now, or no max_routes_per_minute)."""
        window = self._windows.get(self._target.get(check, ""))
        return 0.0 if window is None else window.wait_s(check, self.routes(check), self._monotonic())

    def touch(self, check: str) -> None:
        """A run of `check` was admitted or has ended: its routes count in its target's window from now."""
        window = self._windows.get(self._target.get(check, ""))
        if window is not None:
            window.touch(check, self.routes(check), self._monotonic())

    async def wait_route(self, check: str, *, deadline: float | None = None) -> bool:
        """Wait until a run of `check` fits its target's route window and count it there; False (nothing counted)
        when that would be after `deadline` (monotonic seconds). Bounded: each turn sleeps until room should be
        there, and entries only expire."""
        window = self._windows.get(self._target.get(check, ""))
        if window is None:
            return True
        while (wait := window.wait_s(check, self.routes(check), self._monotonic())) > 0:
            if deadline is not None and self._monotonic() + wait > deadline:
                return False
            await asyncio.sleep(max(0.001, wait))
        window.touch(check, self.routes(check), self._monotonic())
        return True

    async def wait_turn(self, check: str) -> None:
        """Wait (no deadline) until the check's target bucket holds one run's requests, and take them (the
        `check` command, instead of `charge`)."""
        bucket = self._buckets.get(self._target.get(check, ""))
        if bucket is None:
            return
        count = self.requests(check)
        # Every turn either takes the tokens or sleeps until they should be there: bounded by the refill rate.
        while not bucket.try_take(min(count, bucket.capacity), self._monotonic()):  # noqa: ASYNC110 - a timed wait
            await asyncio.sleep(max(0.001, bucket.wait_s(count, self._monotonic())))


__all__ = ["Paced", "Pacing", "RouteWindow", "TokenBucket", "reserve_of", "routes_of"]
