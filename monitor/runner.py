"""Runs checks: one APScheduler job per check, a hard deadline per run, shared metrics, logs and alert hooks."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

import probes
from monitor.core.config import Check, Config
from monitor.core.durations import format_duration
from monitor.core.results import Outcome, ProbeResult, Result
from monitor.metrics import Metrics
from monitor.state import State
from probes.deps import Deps
from probes.kind import Kind

log = structlog.get_logger("pam_monitor.runner")
ResultHook = Callable[[Result], None]
HEARTBEAT_JOB = "__heartbeat__"
SPREAD_GRID_S = 0.02


def run_deadlines(timeout: float, now: float) -> tuple[float, float]:
    """(deadline, hard stop) of a run that starts at event-loop time `now`: the one formula for both.

    The probe gets the whole configured timeout (`deadline`, passed in) and reports `timeout` itself, naming the
    phase that stalled. The hard stop comes slightly later, a quarter of the timeout and at most 0.25 s, so a
    probe finishing its own report is not cut; it only catches a probe that ignores its deadline (a bug).
    """
    deadline = now + timeout
    return deadline, deadline + min(0.25, timeout / 4)


def _redacted(observed: ProbeResult, redact: Callable[[str], str]) -> ProbeResult:
    """The observation with every configured secret removed from its sentence and observed values.

    Probers never put a secret there; a target can, by echoing a request header in an error body that ends
    up in `body_excerpt`. /status, alert annotations and logs all read the result, so it is cleaned once here.
    """
    message = redact(observed.message)
    details = {k: redact(v) if isinstance(v, str) else v for k, v in observed.details.items()}
    if message == observed.message and details == observed.details:
        return observed
    return dataclasses.replace(observed, message=message, details=details)


class Runner:
    """Owns the deadline, the shared metrics and the bookkeeping of every run; probes only observe."""

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
    ) -> None:
        self.config = config
        self.registry = probes.REGISTRY if registry is None else registry
        self.redact = redact
        self.deps = deps
        self.metrics = metrics
        self.state = state
        self.on_result = on_result
        self.checks: dict[str, Check] = {c.name: c for c in config.checks if c.enabled}
        self._scheduled_at: dict[str, float] = {}
        self._last_scheduled: dict[str, float] = {}
        self.in_flight: set[asyncio.Task[Any]] = set()
        self._scheduler: AsyncIOScheduler | None = None
        self._confirming: set[str] = set()
        self._announce()

    def _announce(self) -> None:
        declared = []
        for c in self.checks.values():
            kind = self.registry[c.kind]
            declared.append((c.name, c.kind, kind.outcomes, kind.tables(c), kind.phases(c)))
        self.metrics.set_checks(declared)
        self.state.set_checks([(c.name, c.kind) for c in self.checks.values()],
                              {c.name: c.interval for c in self.checks.values()})

    # -- one run -----------------------------------------------------------------------------------------

    async def run_once(self, check: Check, *, confirmation: bool = False) -> Result:
        """Run one check under its hard deadline, record everything, and return the result. Never raises."""
        clock = self.deps.clock
        started_at = clock.time()
        t0 = clock.monotonic()
        deadline, hard_stop = run_deadlines(check.timeout, asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout_at(hard_stop):
                observed = await self.registry[check.kind].probe(check, self.deps, deadline)
        except TimeoutError:
            observed = ProbeResult(
                Outcome.TIMEOUT, f"no complete answer within the {format_duration(check.timeout)} timeout"
            )
        except Exception as exc:
            log.error(
                "probe.crashed", check=check.name, kind=check.kind, error_type=type(exc).__name__,
                traceback="".join(traceback.format_exception(exc)),
            )
            observed = ProbeResult(
                Outcome.INTERNAL_ERROR, f"the {check.kind} prober failed with {type(exc).__name__}; see the daemon log"
            )
        duration = clock.monotonic() - t0
        if self.redact is not None:
            observed = _redacted(observed, self.redact)
        result = Result(
            check.name, check.kind, observed, started_at=started_at, finished_at=clock.time(),
            duration_s=duration, confirmation=confirmation,
        )
        self.record(result)
        return result

    def record(self, result: Result) -> None:
        """Update state and metrics, log, hand the result to the alert engine, and ask for a confirmation run."""
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
        if changed and not result.confirmation:
            self._request_confirmation(result.check)

    def _request_confirmation(self, name: str) -> None:
        # A change of outcome is confirmed a couple of seconds later instead of a whole interval later, so a real
        # regression pages in about one interval plus seconds and a single blip does not page (DESIGN §4).
        delay = self.config.alerts.confirm_delay
        scheduler = self._scheduler
        check = self.checks.get(name)
        if delay <= 0 or scheduler is None or check is None or delay >= check.interval:
            return
        job = scheduler.get_job(name)
        if job is None or job.next_run_time is None:
            return
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        if job.next_run_time <= when:
            return
        job.modify(next_run_time=when)
        self._confirming.add(name)
        log.debug("check.confirmation_scheduled", check=name, delay_s=delay)

    # -- scheduling ----------------------------------------------------------------------------------------

    def start(self, scheduler: AsyncIOScheduler) -> None:
        """Add one job per check, first runs spread across each interval, plus a heartbeat for /healthz."""
        self._scheduler = scheduler
        scheduler.add_listener(self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        now = dt.datetime.now(dt.UTC)
        by_interval: dict[float, list[Check]] = {}
        for check in self.checks.values():
            by_interval.setdefault(check.interval, []).append(check)
        for interval, group in by_interval.items():
            for i, check in enumerate(sorted(group, key=lambda c: c.name)):
                # Evenly spread first runs: all-at-once costs ~30x the lateness (MEASURED.md). On a 20 ms grid,
                # though: runs due at one grid point start in one scheduler wake-up, and each wake-up costs more
                # CPU than the run it starts (bench/README.md, "Scheduler wake-ups").
                offset = round(interval * (i + 0.5) / len(group) / SPREAD_GRID_S) * SPREAD_GRID_S
                scheduler.add_job(
                    self._job, IntervalTrigger(seconds=interval, start_date=now + dt.timedelta(seconds=offset)),
                    args=[check.name], id=check.name, name=check.name, max_instances=1, coalesce=True,
                    misfire_grace_time=max(1, int(interval)), replace_existing=True,
                )
        if scheduler.get_job(HEARTBEAT_JOB) is None:
            scheduler.add_job(
                self.state.tick, IntervalTrigger(seconds=1), id=HEARTBEAT_JOB, max_instances=1, coalesce=True,
                next_run_time=now,
            )

    def stop(self, scheduler: AsyncIOScheduler) -> None:
        """Remove this runner's jobs and listener (in-flight runs go on until they finish or are cancelled)."""
        scheduler.remove_listener(self._on_event)
        for name in self.checks:
            if scheduler.get_job(name) is not None:
                scheduler.remove_job(name)
        self._scheduler = None

    def _on_event(self, event: Any) -> None:
        if event.job_id == HEARTBEAT_JOB:
            return
        if event.code == EVENT_JOB_SUBMITTED:
            self._scheduled_at[event.job_id] = event.scheduled_run_times[-1].timestamp()
            return
        reason = "max_instances" if event.code == EVENT_JOB_MAX_INSTANCES else "misfire"
        self.metrics.skipped.labels(reason).inc()
        log.warning("scheduler.run_skipped", check=event.job_id, reason=reason)

    async def _job(self, name: str) -> None:
        check = self.checks.get(name)
        if check is None:
            return
        scheduled = self._scheduled_at.pop(name, None)
        confirmation = name in self._confirming
        self._confirming.discard(name)
        if scheduled is not None:
            self.metrics.lateness.observe(max(0.0, time.time() - scheduled))
            last = self._last_scheduled.get(name)
            self._last_scheduled[name] = scheduled
            if last is not None and not confirmation:
                missed = round((scheduled - last) / check.interval) - 1
                if missed > 0:
                    self.metrics.skipped.labels("coalesced").inc(missed)
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            await self.run_once(check, confirmation=confirmation)
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def run_all(self, names: Sequence[str] | None = None) -> list[Result]:
        """Run every enabled check once, concurrently, in config order (the `check` command)."""
        chosen = [self.checks[n] for n in (names or list(self.checks))]
        return list(await asyncio.gather(*(self.run_once(c) for c in chosen)))
