"""ErrorBudgetBurn{slo, window}: the daemon pages on an SLO's error-budget burn itself (the SRE workbook's multiwindow,
multi-burn-rate alerts), so a setup without Prometheus alerting gets the page too.

Counting: every finished run of a check in an SLO adds to that SLO's `Ring`, one (runs, bad runs) pair per minute
for the longest window its burn alerts use (4,320 minutes for the default 3-day ticket: two arrays of 4-byte
counters, 34.6 KB an SLO). Good is `ok`; every other outcome is bad (as `pam-monitor rules` counts), except
`rate_limited` (inconclusive), which is not counted; a skipped run has no result and is not counted either. A run
counts in the minute it finished.

Judging: every `EVERY` seconds (the engine's timer) each burn alert `{severity, factor, long, short}` of each SLO
is judged: BAD when the error ratio over the last `long` AND over the last `short` (whole minutes, the current one
included) both exceed `factor x (1 - objective)`, the very comparison of the Prometheus rule; GOOD otherwise (so it
resolves once the short window's burn falls back, as the workbook's rule does); nothing while either window has
no counted run. One BAD fires it and one GOOD resolves it (the windows already smooth it, as the rule has no
`for:`); flapping and reminders apply as to every alert, and maintenance windows silence it when global or
when every check of the SLO is in one of its own. Key
`ErrorBudgetBurn/slo=<slo>/window=<long>/severity=<severity>`, labels alertname, service, severity (the burn
alert's), slo, window (the long one) plus the external labels; the annotations give both windows' burn rates,
the objective, the budget left and the SLO's checks.

Restart: the daemon hands `seed` the history's buckets (monitor/history.py: 5-minute buckets for the last day,
hour buckets before it), spread evenly over their minutes. What is lost: minute resolution inside those buckets
(right after a restart the 5 m and 30 m windows see each 5-minute bucket's runs spread over its minutes), and the
runs of the last minute before a crash that the history had not flushed yet (a clean stop flushes them). A reload
that changes an SLO's checks or windows starts its counts afresh. With `--shard`, a group whose checks are
partly on other shards is not judged here (only Prometheus sees all its runs).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from alerts.labels import ANNOTATION_LIMIT, daemon_labels
from alerts.lifecycle.machine import AlertState, Policy
from alerts.model import Observation, Signal
from monitor.core.config import AlertName, Config
from monitor.core.config.slo import BurnAlert, SloSpec, duration_label, slo_specs
from monitor.core.results import Outcome, Result

NAME: AlertName = "ErrorBudgetBurn"
EVERY = 15.0
"""Seconds between two judgements (the counts have minute resolution; this keeps the page within a minute)."""
MINUTE = 60
RUNBOOK = ("The SLO is spending its error budget faster than it can afford: read which of its checks fail (their "
           "own alerts, /status), then fix or roll back what started it. A 14.4x burn spends 2 % of a 30-day "
           "budget in an hour; 6x, 5 % in 6 hours; 1x spends it exactly by the end of the window.")

BudgetLeft = Callable[[str], float | None]
"""`budget_left(slo)`: the share of the SLO's budget left over its own window (from the history), or None."""


class Ring:
    """Runs and bad runs per minute for the last `size` minutes (one slot a minute, reused as time goes on)."""

    __slots__ = ("bad", "head", "runs", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.runs = array("I", bytes(4 * size))
        self.bad = array("I", bytes(4 * size))
        self.head: int | None = None  # the latest minute the slots reach

    def _advance(self, minute: int) -> None:
        head = self.head
        if head is None or minute - head >= self.size:
            if head is not None:
                self.runs = array("I", bytes(4 * self.size))
                self.bad = array("I", bytes(4 * self.size))
            self.head = minute
            return
        for m in range(head + 1, minute + 1):
            i = m % self.size
            self.runs[i] = 0
            self.bad[i] = 0
        self.head = max(head, minute)

    def add(self, at: float, runs: int, bad: int) -> None:
        """Count `runs` runs, `bad` of them bad, in the minute of `at` (dropped when older than the ring)."""
        minute = int(at // MINUTE)
        self._advance(minute)
        assert self.head is not None
        if minute <= self.head - self.size:
            return
        i = minute % self.size
        self.runs[i] += runs
        self.bad[i] += bad

    def window(self, now: float, minutes: int) -> tuple[int, int]:
        """(runs, bad runs) over the last `minutes` minutes up to `now`'s (included)."""
        self._advance(int(now // MINUTE))
        assert self.head is not None
        n = min(minutes, self.size)
        end = self.head % self.size + 1
        start = end - n
        if start >= 0:
            return sum(self.runs[start:end]), sum(self.bad[start:end])
        return (sum(self.runs[start:]) + sum(self.runs[:end]), sum(self.bad[start:]) + sum(self.bad[:end]))


def minutes(seconds: float) -> int:
    """A window in whole minutes (at least one)."""
    return max(1, math.ceil(seconds / MINUTE))


def key(slo: str, alert: BurnAlert) -> str:
    """The alert's key: one per SLO and burn alert."""
    return f"{NAME}/slo={slo}/window={duration_label(alert.long)}/severity={alert.severity}"


def owner(slo: str) -> str:
    """The `check` field of its state: no check's name can look like it (check names hold no ':')."""
    return f"slo:{slo}"


def enabled(config: Config) -> bool:
    """Whether the rule is on (alerts.rules.ErrorBudgetBurn.enabled, default true)."""
    override = config.alerts.rules.get(NAME)
    return override is None or override.enabled


def live(config: Config, state: AlertState) -> bool:
    """Whether an ErrorBudgetBurn state still has its SLO and burn alert in the config."""
    if state.alertname != NAME or not state.check.startswith("slo:") or not enabled(config):
        return False
    slo = state.check.removeprefix("slo:")
    return any(key(s.name, a) == state.key for s in slo_specs(config) if s.name == slo for a in s.alerts)


def policy(config: Config, *, silenced: bool) -> Policy:
    """One BAD judgement fires, one GOOD resolves (the windows smooth it); repeat and flapping as configured."""
    return Policy(failure_threshold=1, success_threshold=1, repeat_interval=config.alerts.repeat_interval,
                  flap_window=config.alerts.flapping.window, flap_max=config.alerts.flapping.max_transitions,
                  silenced=silenced)


@dataclass(frozen=True, slots=True)
class Burn:
    """One window's counts and burn rate (error ratio / (1 - objective))."""

    runs: int
    bad: int
    rate: float


class Tracker:
    """Every SLO's minute counts, fed from results as they finish; `judge` turns them into observations."""

    def __init__(self, config: Config) -> None:
        self._specs: list[SloSpec] = []
        self._rings: dict[str, Ring] = {}
        self._by_check: dict[str, list[Ring]] = {}
        self.budget_left: BudgetLeft = lambda slo: None
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Adopt a config: keep the counts of SLOs whose checks and longest window are unchanged."""
        self._config = config
        old = {s.name: s for s in self._specs}
        # A group with checks on other shards would be judged on part of its runs here: only Prometheus, which
        # scrapes every shard, sees all of them (`pam-monitor rules`).
        self._specs = [s for s in slo_specs(config) if config.elsewhere.isdisjoint(s.checks)] if enabled(config) \
            else []
        rings: dict[str, Ring] = {}
        for spec in self._specs:
            size = max((minutes(a.long) for a in spec.alerts), default=0)
            if size == 0:
                continue
            kept = self._rings.get(spec.name)
            same = spec.name in old and old[spec.name].checks == spec.checks
            rings[spec.name] = kept if kept is not None and same and kept.size == size else Ring(size)
        self._rings = rings
        self._by_check = {}
        for spec in self._specs:
            if spec.name in rings:
                for check in spec.checks:
                    self._by_check.setdefault(check, []).append(rings[spec.name])

    def checks(self, owner_: str) -> tuple[str, ...]:
        """The checks of the SLO an alert state's `check` field (`slo:<name>`) names."""
        name = owner_.removeprefix("slo:")
        return next((s.checks for s in self._specs if s.name == name), ())

    @property
    def active(self) -> bool:
        """Whether any SLO has a burn alert to judge."""
        return bool(self._rings)

    def memory_bytes(self) -> int:
        """What the counts take: 8 bytes a minute of each SLO's longest window (array payloads)."""
        return sum(8 * ring.size for ring in self._rings.values())

    def record(self, result: Result) -> None:
        """Count one finished run in the SLOs of its check (not a `rate_limited` one: inconclusive)."""
        rings = self._by_check.get(result.check)
        if not rings or result.outcome is Outcome.RATE_LIMITED:
            return
        bad = 0 if result.outcome is Outcome.OK else 1
        for ring in rings:
            ring.add(result.finished_at, 1, bad)

    def count(self, check: str, at: float, runs: int, bad: int) -> None:
        """Count `runs` runs of a check at once (simulations and `seed`)."""
        for ring in self._by_check.get(check, ()):
            ring.add(at, runs, bad)

    def seed(self, rows: Iterable[tuple[str, float, float, int, int]], now: float) -> int:
        """Restore counts from history buckets `(check, start, size_s, runs, good)`, each spread evenly over its
        minutes up to `now`'s; returns how many buckets were used. Call it before any result is recorded."""
        used = 0
        last = int(now // MINUTE)
        for check, start, size_s, runs, good in rows:
            if check not in self._by_check or runs <= 0:
                continue
            first = int(start // MINUTE)
            span = max(1, min(int(size_s // MINUTE), last - first + 1))
            bad = runs - good
            for k in range(span):
                share = runs // span + (1 if k < runs % span else 0)
                bad_share = bad // span + (1 if k < bad % span else 0)
                if share:
                    self.count(check, (first + k) * MINUTE, share, min(bad_share, share))
            used += 1
        return used

    def burn(self, spec: SloSpec, now: float, window: float) -> Burn | None:
        """The SLO's counts and burn rate over the last `window` seconds; None without a counted run."""
        ring = self._rings.get(spec.name)
        if ring is None:
            return None
        runs, bad = ring.window(now, minutes(window))
        if runs == 0:
            return None
        return Burn(runs, bad, bad / runs / spec.allowed)

    def judge(self, now: float) -> list[Observation]:
        """One judgement of every burn alert of every SLO, as the module says."""
        out: list[Observation] = []
        for spec in self._specs:
            seen: dict[float, Burn | None] = {}
            for alert in spec.alerts:
                threshold = alert.factor * spec.allowed
                # The short window first: it is the cheap one, and while it is below the threshold (most of the
                # time) the long one need not be summed (3 days of minutes are most of a judgement's cost).
                short = seen[alert.short] if alert.short in seen else self.burn(spec, now, alert.short)
                seen[alert.short] = short
                if short is None:
                    continue
                k = key(spec.name, alert)
                if not short.bad / short.runs > threshold:
                    out.append(Observation(k, NAME, owner(spec.name), Signal.GOOD))
                    continue
                long = seen[alert.long] if alert.long in seen else self.burn(spec, now, alert.long)
                seen[alert.long] = long
                if long is None:
                    continue
                if not long.bad / long.runs > threshold:
                    out.append(Observation(k, NAME, owner(spec.name), Signal.GOOD))
                    continue
                out.append(Observation(k, NAME, owner(spec.name), Signal.BAD, self._labels(spec, alert),
                                       self._annotations(spec, alert, long, short)))
        return out

    def _labels(self, spec: SloSpec, alert: BurnAlert) -> dict[str, str]:
        labels = daemon_labels(self._config, NAME, alert.severity)
        labels.update(slo=spec.name, window=duration_label(alert.long))
        return labels

    def _annotations(self, spec: SloSpec, alert: BurnAlert, long: Burn, short: Burn) -> Mapping[str, str]:
        lw, sw = duration_label(alert.long), duration_label(alert.short)
        left = self.budget_left(spec.name)
        left_text = "unknown (no history yet)" if left is None else f"{left * 100:.1f}%"
        objective = f"{spec.objective * 100:g}% over {spec.window_label}"
        return {
            "summary": (f"SLO {spec.name} is burning its error budget at {long.rate:.1f}x over {lw} and "
                        f"{short.rate:.1f}x over {sw} (pages above {alert.factor:g}x); objective {objective}, "
                        f"budget left {left_text}")[:ANNOTATION_LIMIT],
            "description": (f"{long.bad} of {long.runs} runs failed over {lw}, {short.bad} of {short.runs} over "
                            f"{sw}: at {alert.factor:g}x the whole budget lasts "
                            f"{spec.window / alert.factor / 3600:.3g} h")[:ANNOTATION_LIMIT],
            "burn_rate_long": f"{long.rate:.2f}",
            "burn_rate_short": f"{short.rate:.2f}",
            "objective": objective,
            "budget_left": left_text,
            "checks": ", ".join(spec.checks)[:ANNOTATION_LIMIT],
            "runbook": RUNBOOK,
        }


__all__ = ["EVERY", "NAME", "Ring", "Tracker", "enabled", "key", "live", "minutes", "owner", "policy"]
