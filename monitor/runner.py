"""Runs checks: one APScheduler job per check, admission to the target's slots, a deadline that starts only then,
shared metrics, logs, alert hooks and the follow-up runs (confirmation, early runs of root checks, Retry-After).

The monitor's own saturation never becomes a target's outcome: a run that cannot be admitted or trusted in time is
a skipped run, counted and logged once per spell (monitor/saturation.py states the rules and thresholds).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED
from apscheduler.triggers.interval import IntervalTrigger

import probes
from monitor.admission import Admission
from monitor.core.config import Check, Config, dependencies
from monitor.core.durations import format_duration
from monitor.core.results import Outcome, ProbeResult, Result
from monitor.core.secrets import redact_values
from monitor.core.wiretime import watch_wire
from monitor.metrics import Metrics
from monitor.pacing import Pacing
from monitor.saturation import Saturation, admission_window, hard_stop_margin, shed_lag, untrusted
from monitor.schedule import MonotonicScheduler
from monitor.state import State
from probes.deps import Deps
from probes.kind import Kind

log = structlog.get_logger("pam_monitor.runner")
ResultHook = Callable[[Result], None]
HEARTBEAT_JOB = "__heartbeat__"
SPREAD_GRID_S = 0.02
"""First runs start on a grid of this step (seconds), so runs due together share one scheduler wake-up."""
RETRY_AFTER_MAX_INTERVALS = 10
"""A Retry-After postpones a check's next run by at most this many of its intervals."""
CHECK_ATTEMPTS = 3
"""`pam-monitor check`: runs whose deadline could not be trusted (loop lag) are run again, at most this often."""
_TIMED = frozenset({Outcome.TIMEOUT, Outcome.SLOW})  # verdicts about time: untrustworthy under loop lag
CONFIRMATION, EARLY = "confirmation", "early"


def run_deadlines(timeout: float, now: float) -> tuple[float, float]:
    """(deadline, hard stop) of a run admitted at event-loop time `now`: the one formula for both.

    The probe gets the whole configured timeout (`deadline`, passed in) and reports `timeout` itself, naming the
    phase that stalled. The hard stop comes slightly later, a quarter of the timeout and at most 0.25 s, so a
    probe finishing its own report is not cut; it only catches a probe that ignores its deadline (a bug).
    """
    deadline = now + timeout
    return deadline, deadline + hard_stop_margin(timeout)


def _redacted(observed: ProbeResult, redact: Callable[[str], str]) -> ProbeResult:
    """The observation with every configured secret removed from its sentence and observed values.

    Probers never put a secret there; a target can, by echoing a request header in an error body that ends
    up in `body_excerpt`. /status, alert annotations and logs all read the result, so it is cleaned once here.
    """
    message = redact(observed.message)
    details = redact_values(observed.details, redact)
    if message == observed.message and details == observed.details:
        return observed
    return dataclasses.replace(observed, message=message, details=details)


def _roots(config: Config, checks: Mapping[str, Check]) -> dict[str, tuple[str, ...]]:
    """Each enabled check's enabled root checks: its `depends_on` plus its target's `health_check`."""
    out: dict[str, tuple[str, ...]] = {}
    for name, roots in dependencies(config).items():
        found = tuple(r for r in roots if r in checks)
        if name in checks and found:
            out[name] = found
    return out


class Runner:
    """Owns admission, the deadline, the shared metrics and the bookkeeping of every run; probes only observe."""

    def __init__(
        self,
        config: Config,
        deps: Deps,
        metrics: Metrics,
        state: State,
        *,
        on_result: ResultHook | None = None,
        registry: Mapping[str, Kind[Any]] | None = None,
        redact: Callable[[str], str] | None = None,
        saturation: Saturation | None = None,
    ) -> None:
        self.config = config
        self.registry = probes.REGISTRY if registry is None else registry
        self.redact = redact
        self.deps = deps
        self.admission = Admission(config.http.max_in_flight)
        self.metrics = metrics
        self.state = state
        self.on_result = on_result
        self.saturation = saturation or Saturation(metrics)
        self.checks: dict[str, Check] = {c.name: c for c in config.checks if c.enabled}
        self.pacing = Pacing(self.checks.values(), config.targets, lambda c: self.registry[c.kind].requests(c))
        self._roots = _roots(config, self.checks)
        self._scheduled_at: dict[str, float] = {}
        self._last_scheduled: dict[str, float] = {}
        self._extra: dict[str, str] = {}  # check -> CONFIRMATION or EARLY, for its next run
        self._postponed: set[str] = set()
        self.in_flight: set[asyncio.Task[Any]] = set()
        self._scheduler: MonotonicScheduler | None = None
        self._announce()

    def _announce(self) -> None:
        declared = []
        for c in self.checks.values():
            kind = self.registry[c.kind]
            declared.append((c.name, c.kind, kind.outcomes, kind.tables(c), kind.phases(c), kind.speaks_http))
        self.metrics.set_checks(declared, detail=self.config.metrics.detail)
        self.state.set_checks([(c.name, c.kind) for c in self.checks.values()], dict(self.pacing.intervals))
        self.pacing.announce()

    # -- one run -----------------------------------------------------------------------------------------

    async def run_once(self, check: Check, *, confirmation: bool = False, admit_by: float | None = None,
                       must_trust: bool = True, extra: bool = False) -> Result | None:
        """Run one check and record it; None when the run was skipped as saturated. Never raises.

        The run first takes its target's request slots, waiting until `admit_by` (event-loop time; None: as long
        as it takes); its deadline starts once it holds them. A `timeout` or `slow` verdict that the monitor's own
        saturation may have caused (`saturation.untrusted`: a request that reached the wire late, or event-loop
        lag) is discarded; with `must_trust=False` it is reported instead, saying so. An `extra` run (confirmation,
        early root run) took its requests from its target's reserve when it was scheduled (monitor/pacing.py).
        A target with `max_routes_per_minute` admits the run once its route window has room (by `admit_by`).
        """
        loop = asyncio.get_running_loop()
        slots = self.admission.slots_for(check.target)
        wanted = self.pacing.requests(check.name)
        if admit_by is None:
            await self.pacing.wait_turn(check.name)
        if not await self.pacing.wait_route(check.name, deadline=admit_by):
            self.saturation.skipped(check.name, "no room in the target's max_routes_per_minute in time")
            return None
        if not await slots.acquire(wanted, deadline=admit_by):
            self.saturation.skipped(check.name, "no request slot in time")
            return None
        try:
            if admit_by is not None and not extra:
                self.pacing.charge(check.name)
            started_at = self.deps.clock.time()
            admitted = loop.time()
            deadline, hard_stop = run_deadlines(check.timeout, admitted)
            with watch_wire() as wire:
                observed, cut = await self._probe(check, deadline, hard_stop)
            ended = loop.time()
            slots.release(wanted, held=ended - admitted)
            # Its routes count in the target's window from when the run ended: a server sees the requests then.
            self.pacing.touch(check.name)
        except BaseException:
            slots.release(wanted)
            raise
        if wire.exhaustion is not None and must_trust:  # the monitor's own limit, never the target's outcome
            self.saturation.skipped(check.name, f"pam-monitor's own resources ran out: {wire.exhaustion}")
            return None
        if observed.outcome in _TIMED:
            # How late the deadline was noticed is the lag at the moment that mattered most.
            noticed = ended - (hard_stop if cut else deadline) if observed.outcome is Outcome.TIMEOUT else 0.0
            lag = max(self.saturation.lag.max_since(admitted), noticed)
            why = untrusted(observed.outcome, check.timeout, wire_lost=wire.lost, lag=lag)
            if why is not None:
                if must_trust:
                    self.saturation.skipped(check.name, why)
                    return None
                observed = dataclasses.replace(observed, message=(
                    f"{observed.message} (pam-monitor itself was too busy to be sure: {why})"))
        if self.redact is not None:
            observed = _redacted(observed, self.redact)
        result = Result(
            check.name, check.kind, observed, started_at=started_at, finished_at=self.deps.clock.time(),
            duration_s=ended - admitted, confirmation=confirmation,
        )
        self.record(result)
        return result

    async def _probe(self, check: Check, deadline: float, hard_stop: float) -> tuple[ProbeResult, bool]:
        """The probe's observation, and whether the hard stop had to cut it."""
        try:
            async with asyncio.timeout_at(hard_stop):
                return await self.registry[check.kind].probe(check, self.deps, deadline), False
        except TimeoutError:
            return ProbeResult(
                Outcome.TIMEOUT, f"no complete answer within the {format_duration(check.timeout)} timeout"
            ), True
        except Exception as exc:
            log.error(
                "probe.crashed", check=check.name, kind=check.kind, error_type=type(exc).__name__,
                traceback="".join(traceback.format_exception(exc)),
            )
            return ProbeResult(
                Outcome.INTERNAL_ERROR, f"the {check.kind} prober failed with {type(exc).__name__}; see the daemon log"
            ), False

    def record(self, result: Result) -> None:
        """Update state and metrics, log, hand the result to the alert engine, and ask for follow-up runs."""
        previous = self.state.record(result)
        self.metrics.observe(result, previous)
        changed = previous is not None and previous != result.outcome
        fields = {
            "check": result.check, "kind": result.kind, "outcome": result.outcome.value,
            "duration_s": round(result.duration_s, 4), "status_code": result.status_code,
        }
        # Levels follow what a person must see: a change for the worse is a warning, a failure that goes on is
        # info (1,000 failing checks at 2 s would otherwise write 500 warnings a second), a pass is debug.
        if changed or (previous is None and not result.success):
            emit = log.info if result.success else log.warning
            emit("check.transition", previous=previous.value if previous else None,
                 message=result.message, confirmation=result.confirmation, **fields)
        elif not result.success:
            log.info("check.failed", message=result.message, confirmation=result.confirmation, **fields)
        else:
            log.debug("check.finished", **fields)
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception as exc:
                log.error("alerts.observe_failed", check=result.check, error_type=type(exc).__name__,
                          traceback="".join(traceback.format_exception(exc)))
        self._follow_up(result, previous)

    # -- follow-up runs ------------------------------------------------------------------------------------

    def _follow_up(self, result: Result, previous: Outcome | None) -> None:
        """Retry-After postpones the next run; a change of outcome or a bad first result is confirmed soon; a
        check that turns bad has its root checks run early."""
        if result.observed.retry_after is not None and result.observed.retry_after > 0:
            self._postpone(result.check, result.observed.retry_after)
            return
        if result.outcome is Outcome.RATE_LIMITED:  # inconclusive: nothing to confirm
            return
        changed = previous is not None and previous != result.outcome
        first_bad = previous is None and not result.success
        if (changed or first_bad) and not result.confirmation:
            self._pull_in(result.check, CONFIRMATION)
        if not result.success and (previous is None or previous.success):
            for root in self._roots.get(result.check, ()):
                self._pull_in(root, EARLY)

    def _pull_in(self, name: str, why: str) -> None:
        """Move a check's next run to `confirm_delay` from now (a confirmation) or to now (an early run of a root
        check), if that is sooner, the loop is not shedding extra runs, and the budgets allow it."""
        scheduler, check = self._scheduler, self.checks.get(name)
        if scheduler is None or check is None:
            return
        delay = self.config.alerts.confirm_delay if why == CONFIRMATION else 0.0
        if (why == CONFIRMATION and delay <= 0) or delay >= self.pacing.interval(name):
            return
        job = scheduler.get_job(name)
        if job is None or job.next_run_time is None:
            return
        when = scheduler.clock.now() + dt.timedelta(seconds=delay)
        if job.next_run_time <= when:
            return
        lag = self.saturation.lag.sustained()
        if lag >= shed_lag(check.timeout, extra=True) or not self.pacing.allow_extra(name):
            log.debug("check.extra_run_shed", check=name, why=why, lag_s=round(lag, 4))
            return
        job.modify(next_run_time=when)
        self._extra[name] = why
        log.debug("check.extra_run_scheduled", check=name, why=why, delay_s=delay)

    def _postpone(self, name: str, retry_after: float) -> None:
        """The target asked us to wait: no run of this check before now + Retry-After (bounded), no confirmation."""
        scheduler = self._scheduler
        self._extra.pop(name, None)
        if scheduler is None or name not in self.checks:
            return
        delay = min(retry_after, RETRY_AFTER_MAX_INTERVALS * self.pacing.interval(name))
        job = scheduler.get_job(name)
        when = scheduler.clock.now() + dt.timedelta(seconds=delay)
        if job is None or job.next_run_time is None or job.next_run_time >= when:
            return
        job.modify(next_run_time=when)
        self._postponed.add(name)
        log.info("check.postponed", check=name, retry_after_s=retry_after, delay_s=round(delay, 3))

    # -- scheduling ----------------------------------------------------------------------------------------

    def start(self, scheduler: MonotonicScheduler) -> None:
        """Add one job per check, first runs spread across each (effective) interval, and the heartbeat."""
        self._scheduler = scheduler
        scheduler.add_listener(self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        now = scheduler.clock.now()
        by_interval: dict[float, list[Check]] = {}
        for check in self.checks.values():
            by_interval.setdefault(self.pacing.interval(check.name), []).append(check)
        # One trigger per interval and one bound method for every job (1,000 checks: ~0.2 MB less). Sharing a
        # trigger changes no run time: a job's next run is its previous one plus the interval, and the first
        # run is given explicitly (next_run_time); the trigger's start_date is read only for a job without either.
        job = self._job
        for interval, group in by_interval.items():
            trigger = IntervalTrigger(seconds=interval, start_date=now)
            for i, check in enumerate(sorted(group, key=lambda c: c.name)):
                # Evenly spread first runs: all-at-once costs ~30x the lateness. On a 20 ms grid,
                # though: runs due at one grid point start in one scheduler wake-up, and each wake-up costs more
                # CPU than the run it starts (bench/README.md, log: "where the CPU went").
                offset = round(interval * (i + 0.5) / len(group) / SPREAD_GRID_S) * SPREAD_GRID_S
                first = now + dt.timedelta(seconds=offset)
                # misfire_grace_time=None: APScheduler's misfire check reads the wall clock; lateness is judged
                # in _job on the scheduler's monotonic clock instead (admission window).
                scheduler.add_job(
                    job, trigger, args=(check.name,),
                    id=check.name, name=check.name, max_instances=1, coalesce=True, misfire_grace_time=None,
                    replace_existing=True, next_run_time=first,
                )
        scheduler.add_job(
            self._heartbeat, IntervalTrigger(seconds=1, start_date=now), id=HEARTBEAT_JOB, max_instances=1,
            coalesce=True, misfire_grace_time=None, replace_existing=True, next_run_time=now,
        )

    def stop(self, scheduler: MonotonicScheduler) -> None:
        """Remove this runner's jobs and listener (in-flight runs go on until they finish or are cancelled)."""
        scheduler.remove_listener(self._on_event)
        for name in self.checks:
            if scheduler.get_job(name) is not None:
                scheduler.remove_job(name)
        self._scheduler = None

    async def _heartbeat(self) -> None:
        """Every second: /healthz's proof that the scheduler ticks, and the end of a saturation spell."""
        self.state.tick()
        self.saturation.tick()

    def _on_event(self, event: Any) -> None:
        if event.job_id == HEARTBEAT_JOB:
            return
        if event.code == EVENT_JOB_SUBMITTED:
            # On the scheduler clock, like the `now` _job compares it with (the datetime's epoch timestamp would be
            # an hour off it after the wall clock stepped an hour).
            if self._scheduler is not None:
                self._scheduled_at[event.job_id] = self._scheduler.clock.seconds(event.scheduled_run_times[-1])
            return
        self.saturation.skipped(event.job_id, "the previous run was still going", reason="max_instances")

    async def _job(self, name: str) -> None:
        check, scheduler = self.checks.get(name), self._scheduler
        if check is None or scheduler is None:
            return
        loop = asyncio.get_running_loop()
        now = scheduler.clock.timestamp()
        scheduled = self._scheduled_at.pop(name, now)
        extra = self._extra.pop(name, None)
        late = max(0.0, now - scheduled)
        self.metrics.lateness.observe(late)
        self._count_coalesced(name, scheduled, extra)
        admit_by = loop.time() - late + admission_window(self.pacing.interval(name), check.timeout)
        if loop.time() > admit_by:
            self.saturation.skipped(name, f"started {late * 1000:.0f} ms late")
            return
        lag = self.saturation.lag.sustained()
        if lag >= shed_lag(check.timeout, extra=extra is not None):
            self.saturation.skipped(name, f"shed while the event loop lags {lag * 1000:.0f} ms")
            return
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            await self.run_once(check, confirmation=extra == CONFIRMATION, admit_by=admit_by, extra=extra is not None)
        finally:
            if task is not None:
                self.in_flight.discard(task)

    def _count_coalesced(self, name: str, scheduled: float, extra: str | None) -> None:
        """Whole intervals the scheduler skipped over (it stalled), on the scheduler's monotonic clock."""
        last = self._last_scheduled.get(name)
        self._last_scheduled[name] = scheduled
        postponed = name in self._postponed
        self._postponed.discard(name)
        if last is None or extra is not None or postponed:
            return
        missed = round((scheduled - last) / self.pacing.interval(name)) - 1
        self.saturation.skipped(name, "the scheduler stalled past whole intervals", reason="coalesced", count=missed)

    async def run_all(self, names: Sequence[str] | None = None) -> list[Result]:
        """Run every enabled check once, concurrently, in config order (the `check` command).

        Runs wait their turn for their target's slots (and max_rate) with no clock running; a run whose verdict
        could not be trusted (event-loop lag) is run again, up to CHECK_ATTEMPTS times.
        """
        chosen = [self.checks[n] for n in (names or list(self.checks))]
        return list(await asyncio.gather(*(self._one_round(c) for c in chosen)))

    async def _one_round(self, check: Check) -> Result:
        for _ in range(CHECK_ATTEMPTS - 1):
            result = await self.run_once(check)
            if result is not None:
                return result
        last = await self.run_once(check, must_trust=False)
        assert last is not None  # with no admission deadline and must_trust=False, a run always records
        return last
