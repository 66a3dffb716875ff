"""Pacing: a target's `max_rate` is kept by stretching its checks' intervals, never by failing runs; extra runs
(confirmations, early runs of root checks) spend from token buckets so they cannot feed an overload.

- Each check sends `Kind.requests(check)` requests a run. A target with `max_rate` whose checks would send more
  than `PACE_SHARE` (90 %) of it has every check's interval stretched by the same factor; the remaining 10 % is
  headroom for confirmations. Logged once per load (`target.paced`), shown per check in /status `interval_s`.
- Every admitted run is charged to its target's bucket (rate `max_rate`, capacity `TARGET_BURST_S` seconds of
  it, at least one run's requests); an extra run is only scheduled when the bucket holds its requests.
- Extra runs also share one budget for the whole daemon: `CONFIRM_SHARE` (10 %) of the scheduled runs per
  second (at least 1 a second), bursting to `CONFIRM_BURST_S` seconds of it (at least 10). A mass outage then
  confirms a share of its checks within seconds and the rest at their next run, instead of doubling the load.
- `pam-monitor check` (one round) waits for the bucket before each run of a paced target: slow, never over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from monitor.core.config import Check, Target

log = structlog.get_logger("pam_monitor.runner")

PACE_SHARE = 0.9
TARGET_BURST_S = 6.0
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


@dataclass(frozen=True, slots=True)
class Paced:
    """A target whose checks' intervals were stretched to keep its max_rate."""

    target: str
    checks: int
    demand: float  # requests a second at the configured intervals
    max_rate: float  # requests a second allowed
    stretch: float

    def summary(self) -> str:
        """'target backend: 193 checks would send 1,900 req/min; max_rate 50/m: intervals stretched x42.2'."""
        return (f"target {self.target}: {self.checks} checks would send {self.demand * 60:,.0f} req/min; "
                f"max_rate {self.max_rate * 60:,.0f}/m ({PACE_SHARE:.0%} kept for scheduled runs): "
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
    ) -> None:
        self._monotonic = monotonic
        chosen = list(checks)
        self._requests = {c.name: max(1, requests(c)) for c in chosen}
        self._target = {c.name: c.target for c in chosen}
        self.intervals: dict[str, float] = {c.name: c.interval for c in chosen}
        self.paced: list[Paced] = []
        self._buckets: dict[str, TokenBucket] = {}
        now = monotonic()
        by_target: dict[str, list[Check]] = {}
        for check in chosen:
            by_target.setdefault(check.target, []).append(check)
        for name, group in sorted(by_target.items()):
            limit = targets[name].max_rate if name in targets else None
            if limit is None or limit <= 0:
                continue
            biggest = max(self._requests[c.name] for c in group)
            self._buckets[name] = TokenBucket(limit, max(float(biggest), limit * TARGET_BURST_S), now)
            demand = sum(self._requests[c.name] / c.interval for c in group)
            if demand <= PACE_SHARE * limit:
                continue
            stretch = demand / (PACE_SHARE * limit)
            for check in group:
                self.intervals[check.name] = check.interval * stretch
            self.paced.append(Paced(name, len(group), demand, limit, stretch))
        runs_per_s = sum(1.0 / i for i in self.intervals.values())
        rate = max(CONFIRM_MIN_RATE, CONFIRM_SHARE * runs_per_s)
        self._extra = TokenBucket(rate, max(CONFIRM_MIN_BURST, rate * CONFIRM_BURST_S), now)

    def announce(self) -> None:
        """Log each paced target once (`target.paced`)."""
        for paced in self.paced:
            log.warning("target.paced", target=paced.target, checks=paced.checks,
                        requests_per_min=round(paced.demand * 60, 1), max_rate_per_min=round(paced.max_rate * 60, 1),
                        stretch=round(paced.stretch, 2), summary=paced.summary())

    def interval(self, check: str) -> float:
        """The interval the check really runs at (its own, stretched if its target is paced)."""
        return self.intervals[check]

    def requests(self, check: str) -> int:
        """Requests one run of the check sends (at least 1)."""
        return self._requests.get(check, 1)

    def charge(self, check: str) -> None:
        """A run of `check` was admitted: its requests are spent from its target's bucket."""
        bucket = self._buckets.get(self._target.get(check, ""))
        if bucket is not None:
            bucket.charge(self.requests(check), self._monotonic())

    def allow_extra(self, check: str) -> bool:
        """Whether an extra run (confirmation or early root run) of `check` fits both budgets; takes from the
        daemon-wide one when it does (the target's bucket is charged when the run is admitted)."""
        now = self._monotonic()
        bucket = self._buckets.get(self._target.get(check, ""))
        if bucket is not None and bucket.tokens(now) < self.requests(check):
            return False
        return self._extra.try_take(1, now)

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


__all__ = ["Paced", "Pacing", "TokenBucket"]
