"""The alert engine's bookkeeping: result -> rules -> state machine -> store -> outbox (delivered by sinks.delivery).

    async with AlertEngine(config, rules_by_kind=..., registry=..., clock=...) as engine:
        engine.observe(result)          # synchronous and short; the outbox is drained in the background
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import prometheus_client
import structlog

from alerts.judge import blocked, burn, saturated
from alerts.judge.evaluate import evaluate, quiet, remember
from alerts.lifecycle import explain
from alerts.lifecycle.gauges import FiringGauge
from alerts.lifecycle.hold import Seen, Verdict, also_failing, fresh, outage_start, pre_existing, seen_after, verdict
from alerts.lifecycle.machine import Action, AlertState, Status, step
from alerts.lifecycle.maintenance import active_window
from alerts.lifecycle.plan import Batch, Plan, plans_for
from alerts.lifecycle.state_index import StateIndex
from alerts.model import CheckMemory, Event, Notification, Signal
from alerts.persist.database import Store
from alerts.persist.mirror import CHECK_EVERY, RETRY_BASE, Journal
from alerts.sinks.delivery import BACKOFF_BASE, BACKOFF_CAP, Delivery, sink_of
from alerts.sinks.registry import SINKS
from alerts.sinks.spec import SinkSpec
from monitor.core.clock import Clock
from monitor.core.config import Config
from monitor.core.results import Outcome, Result

log = structlog.get_logger("pam_monitor.alerts")

_NO_MEMORY = CheckMemory()
_POLL = 1.0  # the hold timer re-reads the clock at least this often (an injected clock may jump)
_ANSWERED = frozenset({Outcome.OK, Outcome.SLOW, Outcome.RATE_LIMITED})  # results that are no failure of their own
_LOG_EVENT = {Event.FIRING: "alert.fired", Event.REMINDER: "alert.reminder", Event.FLAPPING: "alert.flapping",
              Event.RESOLVED: "alert.resolved"}


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Work counters, for tests and benchmarks: what a result cost."""

    store_writes: int  # SQLite write transactions since start()
    store_changes: int  # rows inserted, updated or deleted since start()
    firing_sets: int  # pam_monitor_alerts_firing series set since the engine was built
    queued: int  # notifications waiting in the outbox


class AlertEngine:
    """Turns results into alerts and notifications. One per daemon.

    `rules_by_kind` maps a check kind to the alertnames its results can raise (the probes declare it).
    Use it as an async context manager, or call `start()` and `aclose(timeout)`; `flush_timeout` is how long
    leaving the context waits for queued notifications (what is left stays in the outbox for the next start).
    A dependent's firing is held back from direct sinks while a check it depends on fails (alerts.lifecycle.hold).
    """

    saturation_every: float = saturated.EVERY
    """How often the daemon should call `saturation` (the thresholds of MonitorSaturated count evaluations)."""

    def __init__(
        self,
        config: Config,
        *,
        rules_by_kind: Mapping[str, Sequence[str]],
        registry: prometheus_client.CollectorRegistry,
        clock: Clock,
        http: httpx.AsyncClient | None = None,
        sinks: Mapping[str, SinkSpec[Any]] = SINKS,
        store_factory: Callable[[Path], Store] = Store.open,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        rng: random.Random | None = None,
        flush_timeout: float = 0.0,
        retry_base: float = RETRY_BASE,
        check_every: float = CHECK_EVERY,
    ) -> None:
        self._config = config
        self._rules_by_kind = rules_by_kind
        self._clock = clock
        self._flush_timeout = flush_timeout
        self._journal = Journal(config.state_dir, store_factory=store_factory, registry=registry, clock=clock.time,
                                retry_base=retry_base, check_every=check_every)
        self._store: Journal | None = None  # the journal, once open
        self._index = StateIndex()
        self._seen: dict[str, Seen] = {}  # roots' and dependents' latest conclusive results (not persisted)
        self._walls = blocked.Tracker()  # each target's checks' foreign refusals (MonitorBlocked)
        self._burn = burn.Tracker(config)  # each SLO's minute counts (ErrorBudgetBurn)
        self._burn_at = float("-inf")
        self._plans, self._graph = plans_for(config, rules_by_kind)
        self._timer: asyncio.Task[None] | None = None
        self._skips_seen = 0
        self._gauge = FiringGauge(config, registry=registry, clock=clock, problem=lambda: self._journal.problem)
        self._delivery = Delivery(
            config, registry=registry, clock=clock, resendable=self._resendable, sinks=sinks, http=http,
            backoff_base=backoff_base, backoff_cap=backoff_cap, rng=rng,
        )

    # ------------------------------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose(self._flush_timeout)

    async def start(self) -> None:
        """Open the state database, reconcile persisted state with the config, start delivery.

        Raises StoreError (StateDirError when state_dir cannot be created or written) when the state cannot be
        used; once started, a failing write is kept in memory, retried and reported (alerts.persist.mirror)."""
        if self._store is not None:
            return
        store = self._journal
        store.open()
        self._store = store
        store.start()
        self._index.reset(dict(store.states))
        now = self._clock.time()
        self._gauge.started(now)
        self._delivery.start(store)
        self._reconcile(now, reason="restart")
        self._delivery.recount()
        self._timer = asyncio.get_running_loop().create_task(self._hold_timer(), name="alerts:hold")
        log.info("alerts.started", states=len(self._index.states),
                 active=sum(1 for s in self._index.states.values() if s.active), held=len(self._index.held),
                 queued=self._delivery.queued, sinks=self._delivery.sink_names())
        self._gauge.recount(self._index.states.values())

    async def reload(self, config: Config) -> None:
        """Adopt a new config: keep the state of checks that still exist, resolve the rest, re-plan sinks."""
        self._config = config
        self._plans, self._graph = plans_for(config, self._rules_by_kind)
        self._seen = {name: seen for name, seen in self._seen.items() if self._graph.tracked(name)}
        self._walls.forget({name: plan.check for name, plan in self._plans.items()})
        self._burn.configure(config)
        self._gauge.configure(config)
        self._delivery.configure(config)
        if self._store is None:
            return
        self._reconcile(self._clock.time(), reason="reload")
        self._delivery.recount()
        self._gauge.recount(self._index.states.values())

    async def aclose(self, timeout: float) -> None:
        """Try to deliver what is queued within `timeout` seconds, then stop; state and outbox persist."""
        store = self._store
        if store is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        await self._delivery.aclose(timeout)
        log.info("alerts.stopped", queued=store.depth())
        await store.aclose()
        self._store = None

    # ------------------------------------------------------------------------------------------ results

    def observe(self, result: Result) -> None:
        """Step every alert this result concerns, persist, enqueue notifications. Synchronous and short."""
        store = self._store
        if store is None:
            log.warning("alerts.observe_before_start", check=result.check)
            return
        now = self._clock.time()
        self._gauge.result_seen(now)
        self._burn.record(result)
        plan = self._plans.get(result.check)
        if plan is None:  # unknown or disabled
            return
        check = plan.check
        if self._graph.tracked(check.name):
            seen = seen_after(self._seen.get(check.name), result, now)
            if seen is not None:
                self._seen[check.name] = seen
        memory = store.memory.get(check.name, _NO_MEMORY)
        mine = self._index.by_check.get(check.name)
        known = [k for k, s in mine.items() if s.active or s.flapping] if mine else []
        window = active_window(plan.windows, now) if plan.windows else None
        policy = plan.policy if window is None else plan.silenced
        batch = Batch()
        self._judge_wall(check, result, now, batch)
        # A passing result on a check with no alert state can only say GOOD about alerts that do not exist.
        observations = () if not mine and quiet(self._config, result) else evaluate(
            self._config, check, result, memory, known, rules=plan.rules, kind_rules=plan.kind_rules,
            extra_labels=plan.labels)
        suspended = self._suspension(plan, result, now) if plan.roots and mine else None
        for obs in observations:
            stored = mine.get(obs.key) if mine else None
            if stored is not None and suspended is not None and stored.active and suspended(stored):
                continue  # begun before its root's outage: the outage's results neither resolve nor re-fire it
            if stored is None and obs.signal is Signal.GOOD:
                # A fresh state stepped with GOOD stays inactive with no edges and no action: nothing to keep.
                continue
            state = stored or AlertState(obs.key, obs.alertname, obs.check)
            new, actions = step(state, obs, now, policy)
            if new.status is Status.PENDING and state.status is Status.INACTIVE:
                log.info("alert.pending", alert=obs.alertname, check=check.name, key=obs.key,
                         outcome=result.outcome.value, confirmation=result.confirmation)
            for action in actions:
                acted = self._act(plan, state, action, result, batch, window_reason=window.reason if window else None)
                if acted.held != new.held:
                    new = dataclasses.replace(new, held=acted.held, release_at=acted.release_at, outage=acted.outage)
            if new.held and new.status is Status.INACTIVE:
                new = dataclasses.replace(new, held=False, release_at=None, outage=False)
            if new != state:
                self._keep(stored, new, batch)
        if plan.roots and self._index.held:
            self._decide(plan, result, {o.key for o in observations if o.signal is Signal.BAD}, now, batch)
        if self._index.held and self._graph.tracked(check.name):
            self._release({check.name, *self._graph.dependents.get(check.name, ())}, now, batch)
        new_memory = remember(memory, result)
        self._write(store, batch, now, memory=[(check.name, new_memory)] if new_memory != memory else [])

    def _judge_wall(self, check: Any, result: Result, now: float, batch: Batch) -> None:
        """MonitorBlocked for the check's target after this result (alerts/judge/blocked.py), before the check's own
        alerts are stepped, so that they are held behind it; its end releases what it held."""
        obs = self._walls.observe(self._config, check, result)
        if obs is None or not blocked.enabled(self._config):
            return
        stored = self._index.states.get(obs.key)
        if stored is None and obs.signal is Signal.GOOD:
            return
        window = active_window(self._config.alerts.maintenance, now) if self._config.alerts.maintenance else None
        state = stored or AlertState(obs.key, obs.alertname, obs.check)
        new, actions = step(state, obs, now, blocked.policy(self._config, silenced=window is not None))
        if new.status is Status.PENDING and state.status is Status.INACTIVE:
            log.info("alert.pending", alert=obs.alertname, target=check.target, check=check.name)
        for action in actions:
            self._act(None, state, action, result, batch, window_reason=window.reason if window else None)
        if new != state:
            self._keep(stored, new, batch)
        if state.active and not new.active:
            # Only what still fails on its own is released; what healed with the wall resolves quietly. A dependent
            # held behind the wall now waits for news of its roots as long as any dependent does.
            mine = [n for n, p in self._plans.items() if p.check.target == check.target]
            for name in mine:
                for s in list(self._index.by_check.get(name, {}).values()):
                    if s.held and s.release_at is None and self._plans[name].roots:
                        self._keep(s, dataclasses.replace(s, release_at=now + self._plans[name].bound), batch)
            self._release(mine, now, batch, still_bad=True)

    def _target_blocked(self, target: str) -> bool:
        """Whether MonitorBlocked is pending or firing for the target: its checks' alerts wait behind it."""
        state = self._index.states.get(blocked.key(target))
        return state is not None and state.active

    def saturation(self, skipped_total: int) -> None:
        """Judge MonitorSaturated (alerts/judge/saturated.py) from the daemon's skipped runs since start, every reason.

        The daemon calls it every `saturated.EVERY` seconds; runs skipped since the previous call make one BAD
        evaluation. Synchronous and short, like `observe`.
        """
        skipped, self._skips_seen = max(0, skipped_total - self._skips_seen), max(skipped_total, self._skips_seen)
        store = self._store
        if store is None or not saturated.enabled(self._config):
            return
        now = self._clock.time()
        obs = saturated.observe(self._config, skipped)
        stored = self._index.states.get(obs.key)
        if stored is None and obs.signal is Signal.GOOD:
            return
        window = active_window(self._config.alerts.maintenance, now) if self._config.alerts.maintenance else None
        state = stored or AlertState(obs.key, obs.alertname, obs.check)
        new, actions = step(state, obs, now, saturated.policy(self._config, silenced=window is not None))
        if new.status is Status.PENDING and state.status is Status.INACTIVE:
            log.info("alert.pending", alert=obs.alertname, skipped=skipped)
        batch = Batch()
        for action in actions:
            self._act(None, state, action, None, batch, window_reason=window.reason if window else None)
        if new != state:
            self._keep(stored, new, batch)
        self._write(store, batch, now)

    def slo_history(self, rows: Iterable[tuple[str, float, float, int, int]],
                    budget_left: Callable[[str], float | None]) -> int:
        """Restore the SLOs' minute counts from the history's buckets `(check, start, size_s, runs, good)` (the
        daemon calls it once at start, before any result) and learn where the budget left comes from; returns
        how many buckets were used (alerts/judge/burn.py says what a restart loses)."""
        self._burn.budget_left = budget_left
        return self._burn.seed(rows, self._clock.time())

    def judge_burn(self) -> None:
        """Judge ErrorBudgetBurn (alerts/judge/burn.py) for every SLO; the engine's timer calls it every burn.EVERY
        seconds. Synchronous and short, like `saturation`."""
        store, now = self._store, self._clock.time()
        self._burn_at = now
        if store is None or not self._burn.active:
            return
        everywhere = active_window(self._config.alerts.maintenance, now) if self._config.alerts.maintenance else None
        batch = Batch()
        for obs in self._burn.judge(now):
            stored = self._index.states.get(obs.key)
            if stored is None and obs.signal is Signal.GOOD:
                continue
            # Silenced by a global window, or when every check of the SLO is in one of its own.
            found = [active_window(p.windows, now) if (p := self._plans.get(c)) is not None else None
                     for c in self._burn.checks(obs.check)]
            window = everywhere or (found[0] if found and all(found) else None)
            rules = burn.policy(self._config, silenced=window is not None)
            state = stored or AlertState(obs.key, obs.alertname, obs.check)
            new, actions = step(state, obs, now, rules)
            for action in actions:
                self._act(None, state, action, None, batch, window_reason=window.reason if window else None)
            if new != state:
                self._keep(stored, new, batch)
        self._write(store, batch, now)

    def active_alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts, then the MonitorWatchdog while it is up: what /status and the page show, each
        with `since` (= the sinks' startsAt), `state_since`, `flapping`, `held_until` and `held_reason`."""
        now = self._clock.time()
        return explain.active(self._index.states.values(), self._plans, self._config, now, root_seen=self._root_seen,
                              seen=self._seen, watchdog=self._gauge.watchdog(now), walled=self._target_blocked)

    def state_problem(self) -> str | None:
        """None while alert state is being saved; otherwise what /readyz says (alerts.persist.mirror)."""
        return self._journal.problem

    def stats(self) -> EngineStats:
        """What the engine has done so far (SQLite counters read 0 before start)."""
        store = self._store
        return EngineStats(
            store_writes=store.writes if store is not None else 0,
            store_changes=store.changes if store is not None else 0,
            firing_sets=self._gauge.sets, queued=self._delivery.queued,
        )

    # ------------------------------------------------------------------------------------------ internals

    def _act(self, plan: Plan | None, before: AlertState, action: Action, result: Result | None, batch: Batch,
             *, window_reason: str | None) -> AlertState:
        """Log one action and queue it for the sinks it is for (none when a maintenance window silenced it; only
        those that inhibit on their own while the alert is held); returns the state, marked held if it is."""
        s = action.state
        fields = {"alert": s.alertname, "check": s.check, "key": s.key}
        if action.silenced:
            log.info("alert.suppressed", **fields, notification=action.event.value, maintenance=window_reason or "")
            return s
        extra: dict[str, Any] = {}
        if result is not None:
            extra = {"outcome": result.outcome.value, "status_code": result.status_code}
        fresh = before.status is not Status.FIRING or not before.notified  # direct sinks know nothing of it yet
        walled = plan is not None and self._target_blocked(plan.check.target)
        if not s.held and plan is not None and (plan.roots or walled) and fresh and action.event in (Event.FIRING,
                                                                                                      Event.FLAPPING):
            release_at = (s.started_at if s.started_at is not None else action.at) + plan.bound
            # Behind MonitorBlocked there is nothing to wait for: its end releases the hold (no release_at).
            decided = Verdict.HOLD if walled else self._verdict(plan, action.at, release_at, s.started_at)
            if decided is not Verdict.SEND:
                s = dataclasses.replace(s, held=True, release_at=None if walled else release_at,
                                        outage=not walled and decided is Verdict.HOLD)
                extra["held"] = "monitor_blocked" if walled else decided.value
        resolved = action.event is Event.RESOLVED
        (log.info if resolved else log.warning)(_LOG_EVENT[action.event], **fields, **extra)
        note = self._notification(s, action.event, action.at, ends_at=action.at if resolved else None)
        batch.rows.extend(self._delivery.route(note, direct=not s.held))
        return s

    def _verdict(self, plan: Plan, now: float, release_at: float | None, started_at: float | None) -> Verdict:
        return verdict(self._seen.get(plan.check.name), [self._root_seen(r) for r in plan.roots], now=now,
                       release_at=release_at, started_at=started_at)

    def _suspension(self, plan: Plan, result: Result, now: float) -> Callable[[AlertState], bool]:
        """Which of a dependent's active alerts this result must leave as they are (lifecycle.hold.pre_existing)."""
        own, roots = self._seen.get(plan.check.name), [self._root_seen(r) for r in plan.roots]
        failed = result.outcome not in _ANSWERED
        return lambda s: pre_existing(s.started_at, own, roots, failed=failed, now=now, bound=plan.bound)

    def _decide(self, plan: Plan, result: Result, bad: set[str], now: float, batch: Batch) -> None:
        """The dependent's first result begun after its roots' outage ended decides its outage-held alerts: sent to
        the direct sinks if this result is still BAD for them, otherwise dropped (resolved where they were sent,
        never sent to the direct sinks)."""
        mine = self._index.by_check.get(plan.check.name)
        held = [s for s in mine.values() if s.held and s.outage and s.status is Status.FIRING] if mine else []
        if not held or not fresh(result.started_at, [self._root_seen(r) for r in plan.roots]):
            return
        for s in held:
            fields = {"alert": s.alertname, "check": s.check, "key": s.key, "outcome": result.outcome.value}
            if s.key in bad:
                if plan.windows and active_window(plan.windows, now) is not None:
                    continue  # the next fresh result decides once the window is over
                released = dataclasses.replace(s, held=False, outage=False, release_at=None, last_notified_at=now)
                log.warning("alert.released", **fields, roots=list(plan.roots))
                event = Event.FLAPPING if s.flapping else Event.FIRING
                batch.rows.extend(self._delivery.route(self._notification(released, event, now), inhibiting=False))
                self._keep(s, released, batch)
                continue
            dropped = dataclasses.replace(s, status=Status.INACTIVE, since=now, held=False, outage=False,
                                          release_at=None, notified=False, last_notified_at=None, flapping=False,
                                          flap_changes=0, bad_streak=0)
            log.info("alert.dropped", **fields, roots=list(plan.roots))
            if s.notified:
                note = self._notification(s, Event.RESOLVED, now, ends_at=now)
                batch.rows.extend(self._delivery.route(note, direct=False))
            self._keep(s, dropped, batch)

    def _root_seen(self, name: str) -> Seen | None:
        seen = self._seen.get(name)
        if seen is not None and seen.failing and not any(s.active for s in self._index.by_check.get(name, {}).values()):
            # Failing with no alert of its own (its rules disabled): it pages nothing, so it holds nothing back.
            return dataclasses.replace(seen, failing=False, since=float("-inf"), since_seen=float("-inf"))
        return seen

    def _release(self, checks: Iterable[str], now: float, batch: Batch, *, still_bad: bool = False) -> int:
        """Tell the direct sinks about the held firing alerts of these checks that may go now (alerts.lifecycle.hold);
        `still_bad`: only those whose latest observation was BAD."""
        released = 0
        for name in checks:
            plan, mine = self._plans.get(name), self._index.by_check.get(name)
            if plan is None or not mine:
                continue
            for s in [s for s in mine.values() if s.held and s.status is Status.FIRING
                      and (not still_bad or s.bad_streak > 0)]:
                if self._target_blocked(plan.check.target):
                    continue  # released when MonitorBlocked ends
                if plan.roots and s.outage:
                    continue  # an outage's: the dependent's first fresh result decides (_decide)
                decided = self._verdict(plan, now, s.release_at, s.started_at) if plan.roots else Verdict.SEND
                if decided is Verdict.HOLD:
                    self._keep(s, dataclasses.replace(s, outage=True), batch)
                    continue
                if decided is not Verdict.SEND:
                    continue
                if plan.windows and active_window(plan.windows, now) is not None:
                    continue  # released once the window is over
                s = dataclasses.replace(s, held=False, outage=False, release_at=None, last_notified_at=now)
                log.warning("alert.released", alert=s.alertname, check=s.check, key=s.key, roots=list(plan.roots))
                event = Event.FLAPPING if s.flapping else Event.FIRING
                batch.rows.extend(self._delivery.route(self._notification(s, event, now), inhibiting=False))
                self._keep(self._index.states.get(s.key), s, batch)
                released += 1
        return released

    def _notification(self, s: AlertState, event: Event, at: float, ends_at: float | None = None) -> Notification:
        """The notification of an alert; a root's firing lists its dependents' active alerts begun during its
        latest outage (`also_failing`)."""
        annotations = dict(s.annotations)
        below = self._graph.below.get(s.check) if event is not Event.RESOLVED else None
        text = also_failing(self._begun_since(below, outage_start(self._seen.get(s.check)))) if below else None
        if text:
            annotations["also_failing"] = text
        return Notification(key=s.key, event=event, labels=dict(s.labels), annotations=annotations,
                            starts_at=s.started_at if s.started_at is not None else at, at=at, ends_at=ends_at)

    def _begun_since(self, checks: Iterable[str], since: float) -> Iterator[tuple[str, str, str]]:
        """(target, check, alertname) of the active alerts of these checks begun at `since` or later."""
        for name in checks:
            plan = self._plans.get(name)
            if plan is not None:
                yield from ((plan.check.target, name, d.alertname) for d in self._index.by_check.get(name, {}).values()
                            if d.active and (d.started_at is None or d.started_at >= since))

    def release_due(self) -> int:
        """Release the held firing alerts whose wait for news of their roots is over (lifecycle.hold); the engine's
        hold timer calls it every second. Returns how many went to the direct sinks."""
        store, now = self._store, self._clock.time()
        if store is None or not self._index.held:
            return 0
        states = self._index.states
        due = {s.check for k in self._index.held if (s := states[k]).release_at is not None and s.release_at <= now}
        if not due:
            return 0
        batch = Batch()
        released = self._release(due, now, batch)
        self._write(store, batch, now)
        return released

    async def _hold_timer(self) -> None:
        while True:
            await asyncio.sleep(_POLL)
            try:
                self.release_due()
                if self._burn.active and self._clock.time() - self._burn_at >= burn.EVERY:
                    self.judge_burn()
            except Exception as exc:  # a bookkeeping bug must not stop the timer
                log.exception("alerts.hold_timer_error", error_type=type(exc).__name__)

    def _reconcile(self, now: float, *, reason: str) -> None:
        """Resolve (and notify, if it was paged) every alert whose check or rule left the config; give held alerts
        after a restart a fresh wait for their roots, and release those whose check no longer depends on any."""
        assert self._store is not None
        live = self._plans
        batch = Batch()
        for key, s in list(self._index.states.items()):
            plan = live.get(s.check)
            if plan is not None and s.alertname in plan.rules:
                if s.held and reason == "restart" and plan.roots:
                    self._keep(s, dataclasses.replace(s, release_at=max(s.release_at or 0.0, now + plan.bound)), batch)
                continue
            if s.alertname == saturated.SATURATED and saturated.enabled(self._config):
                continue  # a daemon-level alert: no check to lose
            if blocked.target_of(s) in self._config.targets and blocked.enabled(self._config):
                continue  # a target-level alert: its target is still configured
            if burn.live(self._config, s):
                continue  # an SLO's alert: its SLO and burn alert are still configured
            if s.status is Status.FIRING and s.notified and s.check in self._config.elsewhere:
                self._hand_over(s, now, batch)
            elif s.status is Status.FIRING and s.notified:
                resolved = dataclasses.replace(s, status=Status.INACTIVE, since=now)
                self._act(None, s, Action(Event.RESOLVED, resolved, now), None, batch, window_reason=None)
                log.info("alert.orphan_resolved", alert=s.alertname, check=s.check, reason=reason)
            batch.deleted.append(key)
            self._index.drop(key)
        checks = {self._index.states[k].check for k in self._index.held}
        self._release({name for name in checks if not live[name].roots}, now, batch)
        self._write(self._store, batch, now)
        self._store.forget_checks([name for name in self._store.memory if name not in live])
        self._delivery.drop_unplanned()

    def _hand_over(self, s: AlertState, now: float, batch: Batch) -> None:
        """A firing alert whose check moved to another shard: the sinks that re-post (Alertmanager) are told nothing,
        so the alert stays open there until its endsAt and the new owner, confirming the failure, renews it under
        the same labels (one alert, never resolved in between); the others, which would keep an incident open
        forever, get the resolution (the new owner fires again if the check still fails)."""
        note = self._notification(s, Event.RESOLVED, now, ends_at=now)
        rows = [row for row in self._delivery.route(note, direct=not s.held) if not self._delivery.renews(row[0])]
        batch.rows.extend(rows)
        log.info("alert.handed_over", alert=s.alertname, check=s.check, key=s.key,
                 resolved_at=sorted({sink_of(lane) for lane, _ in rows}))

    def _resendable(self, now: float) -> list[Notification]:
        """Every firing alert that was notified (held or not), and the watchdog, for sinks that want them re-posted."""
        self._gauge.recount(self._index.states.values())
        notes = [
            self._notification(s, Event.FLAPPING if s.flapping else Event.FIRING, now)
            for s in self._index.states.values() if s.status is Status.FIRING and s.notified
        ]
        watchdog = self._gauge.watchdog(now)
        if watchdog is not None:
            notes.append(watchdog)
        return notes

    def _write(self, store: Journal, batch: Batch, now: float, memory: Sequence[tuple[str, CheckMemory]] = ()) -> None:
        """Commit a batch (nothing when it is empty: a healthy result on a quiet check), wake the lanes, publish."""
        if batch.changed or batch.deleted or batch.rows or memory:
            store.commit(states=batch.changed.values(), delete_states=batch.deleted, memory=memory,
                         enqueue=batch.rows, now=now)
        self._delivery.enqueued(batch.rows)
        if batch.changed or batch.deleted:
            self._gauge.publish()

    def _keep(self, stored: AlertState | None, new: AlertState, batch: Batch) -> None:
        self._index.keep(stored, new, batch)
        self._gauge.moved(stored, new)
