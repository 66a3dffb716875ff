"""The daemon's own saturation: event-loop lag, the rules that keep it out of targets' results, skipped-run counts.

The monitor's saturation is never a target's outcome. The rules, with their thresholds:

- Admission. A run starts its deadline only once it holds its target's request slots. It may wait for them
  until `admission_window` after its scheduled time: 80 % of what the interval leaves after the timeout and the
  hard stop (at least 10 % of interval - timeout), so a run ends before the next one is due. A run that starts
  after that (the scheduler was late) or is still waiting then is a skipped run,
  `pam_monitor_scheduler_skipped_runs_total{reason="saturated"}`, never a result. (`pam-monitor check` waits
  its turn with no clock running.)
- On the wire. A `timeout` counts only time the request was on the wire: `_http.fetch` notes when each request
  reached the network (a TCP connect, or its headers going out on a pooled connection). When a timed-out request
  spent `WIRE_LOST_SHARE` (10 %) or more of its budget inside pam-monitor first (the HTTP client's connection
  pool, the event loop), or never left, the run is skipped (saturated). Measured under CPU contention (1,000
  checks, loop lag 30-50 ms): every invented `timeout` was a request that never reached the wire.
- Lag. A monitor task sleeps `LAG_PERIOD` (20 ms) in a loop; how late it wakes is the loop's lag: how long a
  callback that became ready waits its turn. A `timeout` or `slow` result is discarded as skipped (saturated)
  when the lag seen while the run was on the wire (the largest sample since admission, or how late the run's own
  deadline was noticed) reached `untrusted_lag(timeout)`: 5 % of the check's timeout, at least 5 ms. Why 5 %: an
  answer crosses about five callbacks before the probe sees it (socket, transport, HTTP parser, pool, task), each
  waiting about one lag, so 5 % lag steals about a quarter of the timeout (measured: 200 checks at 100 ms with an
  80 ms timeout, lag samples of 5-22 ms, answers that took 20 ms at the target noticed after 80-110 ms).
- Shedding. While the lag is high, new runs are skipped before they start, confirmation and early runs first:
  a run is shed when each of the last `SUSTAINED_SAMPLES` (3) samples reached `untrusted_lag(timeout)`, a
  confirmation or early run at half of it. One slow callback does not shed; a loop that stays late does.
- Own resources. A request that cannot get a socket or a port on the monitor's host (EMFILE, ENFILE, ENOBUFS,
  EADDRNOTAVAIL, ENOMEM at socket(), connect() or the name lookup; probes/_errors.py) makes its run a skipped
  run (saturated), the cause naming what ran out; `pam-monitor check` reports it as internal_error.
- Logged once per spell: `scheduler.saturated` (warning) at the first skipped run, `scheduler.recovered` (info)
  after `SPELL_QUIET` (10 s) without one, with the counts by cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter, deque
from collections.abc import Callable

import structlog

from monitor.core.results import Outcome
from monitor.metrics import Metrics

log = structlog.get_logger("pam_monitor.runner")
_DIGITS = re.compile(r"\d+")

LAG_PERIOD = 0.02
"""Seconds between two wake-ups of the lag monitor (50 a second: a few µs of CPU each)."""
LAG_KEEP = 60.0
"""Seconds of lag samples kept (runs are never longer than their interval, and time out sooner)."""
SUSTAINED_SAMPLES = 3
"""Consecutive samples that must all be high for the lag to count as sustained (shedding)."""
TRUST_SHARE = 0.05
TRUST_FLOOR = 0.005
EXTRA_SHED_SHARE = 0.5
"""Confirmation and early runs are shed at this share of a regular run's threshold (they go first)."""
ADMISSION_SHARE = 0.8
WIRE_LOST_SHARE = 0.1
"""A timed-out request that spent this share of its budget inside pam-monitor before reaching the wire is the
monitor's timeout, not the target's."""
MIN_ADMISSION_SHARE = 0.1
SPELL_QUIET = 10.0
"""Seconds without a skipped run that end a saturation spell (and log it once)."""


def untrusted_lag(timeout: float) -> float:
    """Loop lag (seconds) at which a check's deadline can no longer be trusted: 5 % of its timeout, >= 5 ms."""
    return max(TRUST_FLOOR, TRUST_SHARE * timeout)


def untrusted(outcome: Outcome, timeout: float, *, wire_lost: float, lag: float) -> str | None:
    """Why a `timeout` or `slow` verdict cannot be trusted, as a phrase for the log, or None when it can.

    `wire_lost`: the largest share of a timed-out request's budget spent inside pam-monitor before it reached the
    wire (monitor.core.wiretime.Wire); `lag`: the largest event-loop lag seen while the run was on the wire.
    """
    if outcome is Outcome.TIMEOUT and wire_lost >= WIRE_LOST_SHARE:
        if wire_lost >= 1.0:
            return "a request timed out before it ever left pam-monitor"
        return f"a request spent {wire_lost:.0%} of its timeout inside pam-monitor before reaching the wire"
    if outcome in (Outcome.TIMEOUT, Outcome.SLOW) and lag >= untrusted_lag(timeout):
        return f"a {outcome.value} verdict while the event loop lagged {lag * 1000:.0f} ms"
    return None


def hard_stop_margin(timeout: float) -> float:
    """How long after its deadline the runner cuts a probe that ignores it (see runner.run_deadlines)."""
    return min(0.25, timeout / 4)


def admission_window(interval: float, timeout: float) -> float:
    """Seconds after its scheduled time a run may still be admitted: 80 % of what the interval leaves after the
    timeout and the hard stop, and at least 10 % of what it leaves after the timeout."""
    slack = interval - timeout
    return max(MIN_ADMISSION_SHARE * slack, ADMISSION_SHARE * (slack - hard_stop_margin(timeout)))


class LoopLag:
    """Measures the event loop's lag continuously: a task that sleeps LAG_PERIOD and records how late it woke.

    Cheap (20 wake-ups a second), and the only way to tell "the target did not answer in time" from "we were
    too busy to notice that it had". `observe` receives every sample (the daemon's histogram).
    """

    def __init__(self, observe: Callable[[float], None] | None = None, *, period: float = LAG_PERIOD) -> None:
        self._observe = observe
        self._period = period
        self._samples: deque[tuple[float, float]] = deque(maxlen=max(SUSTAINED_SAMPLES, int(LAG_KEEP / period)))
        self._due: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the monitor task on the running loop (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="pam-monitor-loop-lag")

    async def aclose(self) -> None:
        """Stop the monitor task."""
        task, self._task = self._task, None
        self._due = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:  # ends when the task is cancelled (aclose)
            self._due = loop.time() + self._period
            await asyncio.sleep(self._period)
            woke = loop.time()
            self.record(woke, max(0.0, woke - self._due))

    def record(self, woke: float, lag: float) -> None:
        """Add one sample: the monitor woke at loop time `woke`, `lag` seconds late (tests feed samples here)."""
        self._samples.append((woke, lag))
        if self._observe is not None:
            self._observe(lag)

    def overdue(self) -> float:
        """How late the monitor is right now (the loop is busy with a backlog), 0 when it is not."""
        if self._due is None or self._task is None:
            return 0.0
        return max(0.0, asyncio.get_running_loop().time() - self._due)

    def max_since(self, since: float) -> float:
        """The largest lag seen from loop time `since` until now (samples that ended after it, and the current
        overdue)."""
        worst = self.overdue()
        for woke, lag in reversed(self._samples):
            if woke < since:
                break
            worst = max(worst, lag)
        return worst

    def sustained(self) -> float:
        """The lag the loop has kept: the smallest of the last SUSTAINED_SAMPLES samples (0 with fewer)."""
        if len(self._samples) < SUSTAINED_SAMPLES:
            return 0.0
        return min(self._samples[-i][1] for i in range(1, SUSTAINED_SAMPLES + 1))


def shed_lag(timeout: float, *, extra: bool) -> float:
    """Sustained lag at which a run is shed before it starts (extra runs: confirmations and early root runs)."""
    threshold = untrusted_lag(timeout)
    return threshold * EXTRA_SHED_SHARE if extra else threshold


class Saturation:
    """The daemon's saturation bookkeeping, kept across config reloads: the loop lag and the skipped runs.

    Every skipped run goes through `skipped`: it counts `pam_monitor_scheduler_skipped_runs_total{reason}` and
    `total` (what the alert engine judges MonitorSaturated from), and logs the spell, not each run.
    """

    def __init__(self, metrics: Metrics, *, lag: LoopLag | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.lag = lag or LoopLag(metrics.loop_lag.observe)
        self._monotonic = monotonic
        self.total = 0
        """Skipped runs since start, every reason."""
        self._spell_started: float | None = None
        self._last_skip = 0.0
        self._causes: Counter[str] = Counter()

    def skipped(self, check: str, cause: str, *, reason: str = "saturated", count: int = 1) -> None:
        """Count `count` skipped runs of `check` under `reason` (a metric label) and `cause` (for the log)."""
        if count <= 0:
            return
        self.metrics.skipped.labels(reason).inc(count)
        self.total += count
        now = self._monotonic()
        if self._spell_started is None:
            self._spell_started = now
            self._causes = Counter()
            log.warning("scheduler.saturated", check=check, reason=reason, cause=cause,
                        lag_s=round(self.lag.sustained(), 4),
                        hint="pam-monitor cannot keep up: runs are skipped, never reported as the target's "
                             "failure; give it more CPU, fewer checks, longer intervals or more http.max_in_flight "
                             "(or, when the cause is its own resources, a higher open-files limit: ulimit -n)")
        self._causes[f"{reason}: {_DIGITS.sub('N', cause)}"] += count
        self._last_skip = now

    def tick(self) -> None:
        """Called every second: ends a spell after SPELL_QUIET seconds without a skipped run, with one log line."""
        if self._spell_started is None:
            return
        now = self._monotonic()
        if now - self._last_skip < SPELL_QUIET:
            return
        log.info("scheduler.recovered", skipped=sum(self._causes.values()), causes=dict(self._causes),
                 lasted_s=round(self._last_skip - self._spell_started, 1))
        self._spell_started = None

    @property
    def in_spell(self) -> bool:
        """Whether runs were skipped within the last SPELL_QUIET seconds."""
        return self._spell_started is not None


__all__ = [
    "LAG_PERIOD",
    "WIRE_LOST_SHARE",
    "LoopLag",
    "Saturation",
    "admission_window",
    "hard_stop_margin",
    "shed_lag",
    "untrusted",
    "untrusted_lag",
]
