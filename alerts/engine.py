"""The alert engine's bookkeeping: result -> rules -> state machine -> store -> outbox (delivered by alerts.delivery).

    async with AlertEngine(config, rules_by_kind=..., registry=..., clock=...) as engine:
        engine.observe(result)          # synchronous and short; the outbox is drained in the background
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import prometheus_client
import structlog

from alerts import saturated
from alerts.delivery import BACKOFF_BASE, BACKOFF_CAP, Delivery
from alerts.gauges import FiringGauge
from alerts.machine import Action, AlertState, Policy, Status, step
from alerts.maintenance import active_window
from alerts.model import CheckMemory, Event, Notification, Signal
from alerts.registry import SINKS
from alerts.rules import evaluate, remember, rules_for
from alerts.sink import SinkSpec
from alerts.store import Store
from monitor.core.clock import Clock, iso
from monitor.core.config import Config, Maintenance
from monitor.core.results import Result

log = structlog.get_logger("pam_monitor.alerts")

_NO_MEMORY = CheckMemory()
_LOG_EVENT = {Event.FIRING: "alert.fired", Event.REMINDER: "alert.reminder", Event.FLAPPING: "alert.flapping",
              Event.RESOLVED: "alert.resolved"}


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Work counters, for tests and benchmarks: what a result cost."""

    store_writes: int  # SQLite write transactions since start()
    store_changes: int  # rows inserted, updated or deleted since start()
    firing_sets: int  # pam_monitor_alerts_firing series set since the engine was built
    queued: int  # notifications waiting in the outbox


@dataclass(frozen=True, slots=True)
class _Plan:
    """What observe() needs about one enabled check, worked out once per config load or reload."""

    check: Any
    rules: tuple[str, ...]
    windows: tuple[Maintenance, ...]  # global, then the check's own
    policy: Policy
    silenced: Policy  # the same policy while a maintenance window is open


def _plans_for(config: Config, rules_by_kind: Mapping[str, Sequence[str]]) -> dict[str, _Plan]:
    plans: dict[str, _Plan] = {}
    for check in config.checks:
        if not check.enabled:
            continue
        policy = Policy(
            failure_threshold=check.failure_threshold, success_threshold=check.success_threshold,
            repeat_interval=config.alerts.repeat_interval, flap_window=config.alerts.flapping.window,
            flap_max=config.alerts.flapping.max_transitions, silenced=False,
        )
        plans[check.name] = _Plan(
            check=check, rules=rules_for(config, check, rules_by_kind),
            windows=(*config.alerts.maintenance, *check.maintenance),
            policy=policy, silenced=dataclasses.replace(policy, silenced=True),
        )
    return plans


class AlertEngine:
    """Turns results into alerts and notifications (DESIGN §4, §5). One per daemon.

    `rules_by_kind` maps a check kind to the alertnames its results can raise (the probes declare it).
    Use it as an async context manager, or call `start()` and `aclose(timeout)`; `flush_timeout` is how long
    leaving the context waits for queued notifications (what is left stays in the outbox for the next start).
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
    ) -> None:
        self._config = config
        self._rules_by_kind = rules_by_kind
        self._clock = clock
        self._store_factory = store_factory
        self._flush_timeout = flush_timeout
        self._store: Store | None = None
        self._states: dict[str, AlertState] = {}
        # The same states by check then key, so a result touches only its own check's states.
        self._by_check: dict[str, dict[str, AlertState]] = {}
        self._memory: dict[str, CheckMemory] = {}
        self._skips_seen = 0
        self._plans = _plans_for(config, rules_by_kind)
        self._gauge = FiringGauge(config, registry=registry, clock=clock)
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
        """Open the state database, reconcile persisted state with the config, start delivery."""
        if self._store is not None:
            return
        store = self._store = self._store_factory(self._config.state_dir)
        self._set_states(store.load_states())
        self._memory = store.load_memory()
        now = self._clock.time()
        self._gauge.started(now)
        self._delivery.start(store)
        self._reconcile(now, reason="restart")
        self._delivery.recount()
        log.info("alerts.started", states=len(self._states),
                 active=sum(1 for s in self._states.values() if s.active), queued=self._delivery.queued,
                 sinks=self._delivery.sink_names())
        self._gauge.recount(self._states.values())

    async def reload(self, config: Config) -> None:
        """Adopt a new config: keep the state of checks that still exist, resolve the rest, re-plan sinks."""
        self._config = config
        self._plans = _plans_for(config, self._rules_by_kind)
        self._gauge.configure(config)
        self._delivery.configure(config)
        if self._store is None:
            return
        self._reconcile(self._clock.time(), reason="reload")
        self._delivery.recount()
        self._gauge.recount(self._states.values())

    async def aclose(self, timeout: float) -> None:
        """Try to deliver what is queued within `timeout` seconds, then stop; state and outbox persist."""
        store = self._store
        if store is None:
            return
        await self._delivery.aclose(timeout)
        log.info("alerts.stopped", queued=store.depth())
        store.close()
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
        plan = self._plans.get(result.check)
        if plan is None:  # unknown or disabled
            return
        check = plan.check
        memory = self._memory.get(check.name, _NO_MEMORY)
        mine = self._by_check.get(check.name)
        known = [k for k, s in mine.items() if s.active or s.flapping] if mine else []
        window = active_window(plan.windows, now) if plan.windows else None
        policy = plan.policy if window is None else plan.silenced
        changed: list[AlertState] = []
        deleted: list[str] = []
        rows: list[tuple[str, Notification]] = []
        for obs in evaluate(self._config, check, result, memory, known, rules=plan.rules):
            stored = mine.get(obs.key) if mine else None
            if stored is None and obs.signal is Signal.GOOD:
                # A fresh state stepped with GOOD stays inactive with no edges and no action: nothing to keep.
                continue
            state = stored or AlertState(obs.key, obs.alertname, obs.check)
            new, actions = step(state, obs, now, policy)
            if new.status is Status.PENDING and state.status is Status.INACTIVE:
                log.info("alert.pending", alert=obs.alertname, check=check.name, key=obs.key,
                         outcome=result.outcome.value, confirmation=result.confirmation)
            for action in actions:
                rows.extend(self._act(action, result, window_reason=window.reason if window else None))
            if new == state:
                continue
            if new.disposable:
                if stored is not None:
                    self._drop_state(obs.key)
                    deleted.append(obs.key)
            else:
                self._put_state(new)
                changed.append(new)
            self._gauge.moved(stored, new)
        new_memory = remember(memory, result)
        remembered = new_memory != memory
        if changed or deleted or rows or remembered:  # a healthy result on a quiet check writes nothing
            store.commit(
                states=changed, delete_states=deleted,
                memory=[(check.name, new_memory)] if remembered else [], enqueue=rows, now=now,
            )
        if remembered:
            self._memory[check.name] = new_memory
        if rows:
            self._delivery.enqueued(rows)
        if changed or deleted:
            self._gauge.publish()

    def saturation(self, skipped_total: int) -> None:
        """Judge MonitorSaturated (alerts/saturated.py) from the daemon's skipped runs since start, every reason.

        The daemon calls it every `saturated.EVERY` seconds; runs skipped since the previous call make one BAD
        evaluation. Synchronous and short, like `observe`.
        """
        skipped, self._skips_seen = max(0, skipped_total - self._skips_seen), max(skipped_total, self._skips_seen)
        store = self._store
        if store is None or not saturated.enabled(self._config):
            return
        now = self._clock.time()
        obs = saturated.observe(self._config, skipped)
        stored = self._states.get(obs.key)
        if stored is None and obs.signal is Signal.GOOD:
            return
        window = active_window(self._config.alerts.maintenance, now) if self._config.alerts.maintenance else None
        state = stored or AlertState(obs.key, obs.alertname, obs.check)
        new, actions = step(state, obs, now, saturated.policy(self._config, silenced=window is not None))
        if new.status is Status.PENDING and state.status is Status.INACTIVE:
            log.info("alert.pending", alert=obs.alertname, skipped=skipped)
        rows: list[tuple[str, Notification]] = []
        for action in actions:
            rows.extend(self._act(action, None, window_reason=window.reason if window else None))
        if new == state and not rows:
            return
        deleted: list[str] = []
        changed: list[AlertState] = []
        if new.disposable:
            if stored is not None:
                self._drop_state(obs.key)
                deleted.append(obs.key)
        else:
            self._put_state(new)
            changed.append(new)
        store.commit(states=changed, delete_states=deleted, enqueue=rows, now=now)
        self._gauge.moved(stored, new)
        if rows:
            self._delivery.enqueued(rows)
        self._gauge.publish()

    def active_alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts for /status and the HTML page (labels only: they never hold secrets)."""
        active = sorted((s for s in self._states.values() if s.active),
                        key=lambda s: (s.status is not Status.FIRING, s.alertname, s.key))
        return [
            {"alertname": s.alertname, "state": s.status.value, "labels": dict(s.labels), "since": iso(s.since)}
            for s in active
        ]

    def stats(self) -> EngineStats:
        """What the engine has done so far (SQLite counters read 0 before start)."""
        store = self._store
        return EngineStats(
            store_writes=store.writes if store is not None else 0,
            store_changes=store.changes if store is not None else 0,
            firing_sets=self._gauge.sets, queued=self._delivery.queued,
        )

    # ------------------------------------------------------------------------------------------ internals

    def _act(
        self, action: Action, result: Result | None, *, window_reason: str | None
    ) -> list[tuple[str, Notification]]:
        """Log one action and turn it into outbox rows (none when a maintenance window silenced it)."""
        s = action.state
        fields = {"alert": s.alertname, "check": s.check, "key": s.key}
        if action.silenced:
            log.info("alert.suppressed", **fields, notification=action.event.value, maintenance=window_reason or "")
            return []
        extra: dict[str, Any] = {}
        if result is not None:
            extra = {"outcome": result.outcome.value, "status_code": result.status_code}
        resolved = action.event is Event.RESOLVED
        (log.info if resolved else log.warning)(_LOG_EVENT[action.event], **fields, **extra)
        note = Notification(
            key=s.key, event=action.event, labels=dict(s.labels), annotations=dict(s.annotations),
            starts_at=s.started_at if s.started_at is not None else action.at, at=action.at,
            ends_at=action.at if resolved else None,
        )
        return self._delivery.route(note)

    def _reconcile(self, now: float, *, reason: str) -> None:
        """Resolve (and notify, if it was paged) every alert whose check or rule left the config."""
        assert self._store is not None
        live = self._plans
        deleted: list[str] = []
        rows: list[tuple[str, Notification]] = []
        for key, s in list(self._states.items()):
            plan = live.get(s.check)
            if plan is not None and s.alertname in plan.rules:
                continue
            if s.alertname == saturated.SATURATED and saturated.enabled(self._config):
                continue  # a daemon-level alert: no check to lose
            if s.status is Status.FIRING and s.notified:
                resolved = dataclasses.replace(s, status=Status.INACTIVE, since=now)
                rows.extend(self._act(Action(Event.RESOLVED, resolved, now), None, window_reason=None))
                log.info("alert.orphan_resolved", alert=s.alertname, check=s.check, reason=reason)
            deleted.append(key)
            self._drop_state(key)
        gone = [name for name in self._memory if name not in live]
        for name in gone:
            self._memory.pop(name)
        self._store.commit(delete_states=deleted, enqueue=rows, now=now)
        self._store.forget_checks(gone)
        self._delivery.drop_unplanned()
        self._delivery.enqueued(rows)

    def _resendable(self, now: float) -> list[Notification]:
        """Every firing alert that was notified, and the watchdog, for sinks that want them re-posted."""
        self._gauge.recount(self._states.values())
        notes = [
            Notification(key=s.key, event=Event.FLAPPING if s.flapping else Event.FIRING, labels=dict(s.labels),
                         annotations=dict(s.annotations),
                         starts_at=s.started_at if s.started_at is not None else s.since, at=now)
            for s in self._states.values() if s.status is Status.FIRING and s.notified
        ]
        watchdog = self._gauge.watchdog(now)
        if watchdog is not None:
            notes.append(watchdog)
        return notes

    def _set_states(self, states: dict[str, AlertState]) -> None:
        self._states = {}
        self._by_check = {}
        for state in states.values():
            self._put_state(state)

    def _put_state(self, state: AlertState) -> None:
        self._states[state.key] = state
        self._by_check.setdefault(state.check, {})[state.key] = state

    def _drop_state(self, key: str) -> None:
        state = self._states.pop(key)
        mine = self._by_check[state.check]
        del mine[key]
        if not mine:
            del self._by_check[state.check]
