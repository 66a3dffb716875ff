"""The alert engine: results in, state machines stepped, state and outbox persisted, sinks fed with retries."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import prometheus_client
import structlog

from alerts import alertmanager, pagerduty, slack, webhook
from alerts.delivery import BACKOFF_BASE, BACKOFF_CAP, SendResult, backoff, host_of
from alerts.machine import Action, ActionKind, AlertState, Policy, Status, step
from alerts.maintenance import active_window
from alerts.model import WATCHDOG, Notification, SinkContext
from alerts.rules import ALERTNAMES, SEVERITIES, CheckMemory, Signal, evaluate, remember, rules_for, watchdog_labels
from alerts.store import Store
from monitor.core.clock import Clock, iso
from monitor.core.config import Config, Maintenance, Sink
from monitor.core.results import Result

log = structlog.get_logger("pam_monitor.alerts")

NOTIFICATION_RESULTS: tuple[str, ...] = ("sent", "retried", "rejected", "failed", "dropped")
"""sent: a sink accepted it; retried: an attempt failed and will be retried; rejected: a 4xx config error
(not retried); failed: given up after max_attempts; dropped: discarded because its sink left the config."""

SendFn = Callable[..., Awaitable[SendResult]]
_SENDERS: dict[str, SendFn] = {
    "alertmanager": alertmanager.send,
    "pagerduty": pagerduty.send,
    "slack": slack.send,
    "webhook": webhook.send,
}
_POLL = 1.0  # a lane re-reads the clock at least this often (an injected clock may jump)
_AM_BATCH = 64


_NO_MEMORY = CheckMemory()
_Combo = tuple[str, str]  # (alertname, severity): one series of pam_monitor_alerts_firing


@dataclass(frozen=True, slots=True)
class _Plan:
    """What observe() needs about one enabled check, worked out once per config load or reload."""

    check: Any
    rules: tuple[str, ...]
    windows: tuple[Maintenance, ...]  # global, then the check's own
    policy: Policy
    silenced: Policy  # the same policy while a maintenance window is open


def _plans_for(config: Config) -> dict[str, _Plan]:
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
            check=check, rules=rules_for(config, check),
            windows=(*config.alerts.maintenance, *check.maintenance),
            policy=policy, silenced=dataclasses.replace(policy, silenced=True),
        )
    return plans


def _watchdog_slack(config: Config) -> float | None:
    """How long without a result before the watchdog stops; None: no enabled check, always healthy."""
    intervals = [c.interval for c in config.checks if c.enabled]
    if not intervals:
        return None
    return max(3 * max(intervals), 3 * config.alerts.resend_interval)


def _firing_combo(state: AlertState | None) -> _Combo | None:
    if state is None or state.status is not Status.FIRING:
        return None
    return state.alertname, state.labels.get("severity", "none")


@dataclass(eq=False)
class _Lane:
    """One delivery queue: a sink, or one URL of a multi-URL Alertmanager sink. Strict FIFO."""

    id: str
    sink: Any
    url_index: int
    host: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    next_resend: float = 0.0

    @property
    def name(self) -> str:
        return str(self.sink.display_name)

    @property
    def is_alertmanager(self) -> bool:
        return bool(self.sink.kind == "alertmanager")

    def accepts(self, event: str) -> bool:
        """Alertmanager repeats on its own (repeat_interval), so reminders go to the other sinks only."""
        return not (self.is_alertmanager and event == "reminder")


def _lanes_for(sinks: Sequence[Sink]) -> dict[str, tuple[Any, int, str]]:
    out: dict[str, tuple[Any, int, str]] = {}
    for sink in sinks:
        if sink.kind == "alertmanager":
            for i, url in enumerate(sink.all_urls()):
                out[f"{sink.display_name}#{i}"] = (sink, i, host_of(url))
        else:
            url = sink.url if isinstance(sink.url, str) else sink.url.get_secret_value()
            out[sink.display_name] = (sink, 0, host_of(url))
    return out


class AlertEngine:
    """Turns results into alerts and notifications (DESIGN §4, §5). One per daemon; `start()` then `observe()`."""

    def __init__(
        self,
        config: Config,
        *,
        registry: prometheus_client.CollectorRegistry,
        clock: Clock,
        http: httpx.AsyncClient | None = None,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._http = http
        self._own_http = http is None
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = rng or random.Random()  # noqa: S311 - jitter only
        self._store: Store | None = None
        self._states: dict[str, AlertState] = {}
        # The same states by check then key, so a result touches only its own check's states.
        self._by_check: dict[str, dict[str, AlertState]] = {}
        self._memory: dict[str, CheckMemory] = {}
        self._plans: dict[str, _Plan] = {}
        self._slack: float | None = None
        self._watchdog_combo: _Combo | None = None
        self._firing_counts: dict[_Combo, int] = {}
        self._watchdog_up = False  # what the watchdog's firing series shows
        self._queued = 0  # outbox rows; read from SQLite at start, then counted on enqueue and delete
        self._lanes: dict[str, _Lane] = {}
        self._started_at = clock.time()
        self._last_observe: float | None = None
        self._stopping = False
        self._firing = prometheus_client.Gauge(
            "pam_monitor_alerts_firing", "Alerts currently firing, by alertname and severity.",
            ["alertname", "severity"], registry=registry,
        )
        self._notifications = prometheus_client.Counter(
            "pam_monitor_notifications", "Notification delivery attempts by sink and result "
            "(sent, retried, rejected, failed, dropped).", ["sink", "result"], registry=registry,
        )
        self._depth = prometheus_client.Gauge(
            "pam_monitor_notification_queue_depth", "Notifications waiting in the outbox.", registry=registry,
        )
        for name in ALERTNAMES:
            for severity in SEVERITIES:
                self._firing.labels(name, severity).set(0)
        self._precreate_sinks(config)
        self._plan(config)

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the state database, reconcile persisted state with the config, start delivery."""
        if self._store is not None:
            return
        self._store = Store.open(self._config.state_dir)
        self._set_states(self._store.load_states())
        self._memory = self._store.load_memory()
        if self._http is None:
            self._http = httpx.AsyncClient(trust_env=False, follow_redirects=False,
                                           headers={"User-Agent": self._config.http.user_agent})
        now = self._clock.time()
        self._started_at = now
        self._reconcile(now, reason="restart")
        self._sync_lanes()
        self._queued = self._store.depth()
        log.info("alerts.started", states=len(self._states),
                 active=sum(1 for s in self._states.values() if s.active), queued=self._queued,
                 sinks=sorted({lane.name for lane in self._lanes.values()}))
        self._refresh_gauges()

    async def reload(self, config: Config) -> None:
        """Adopt a new config: keep the state of checks that still exist, resolve the rest, re-plan sinks."""
        self._config = config
        self._precreate_sinks(config)
        self._plan(config)
        if self._store is None:
            return
        self._reconcile(self._clock.time(), reason="reload")
        self._sync_lanes()
        self._queued = self._store.depth()
        self._refresh_gauges()

    async def aclose(self, timeout: float) -> None:
        """Try to deliver what is queued within `timeout` seconds, then stop; state and outbox persist."""
        store = self._store
        if store is None:
            return
        store.hurry(self._clock.time())
        for lane in self._lanes.values():
            lane.wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while store.depth() > 0 and loop.time() < deadline:  # noqa: ASYNC110 - the depth lives in SQLite
            await asyncio.sleep(0.02)
        self._stopping = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        left = store.depth()
        log.info("alerts.stopped", queued=left)
        store.close()
        self._store = None
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    # ------------------------------------------------------------------------------------------ results

    def observe(self, result: Result) -> None:
        """Step every alert this result concerns, persist, enqueue notifications. Synchronous and short."""
        store = self._store
        if store is None:
            log.warning("alerts.observe_before_start", check=result.check)
            return
        now = self._clock.time()
        self._last_observe = now
        if not self._watchdog_up and self._watchdog_combo is not None:
            self._show_firing(self._watchdog_combo)
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
        moved: set[_Combo] = set()
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
            before, after = _firing_combo(stored), _firing_combo(new)
            if before != after:
                for combo, delta in ((before, -1), (after, 1)):
                    if combo is not None:
                        self._firing_counts[combo] = self._firing_counts.get(combo, 0) + delta
                        moved.add(combo)
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
            self._queued += len(rows)
            self._depth.set(self._queued)
            self._wake({lane for lane, _ in rows})
        for combo in moved:
            self._show_firing(combo)

    def active_alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts for /status and the HTML page (labels only: they never hold secrets)."""
        active = sorted((s for s in self._states.values() if s.active),
                        key=lambda s: (s.status is not Status.FIRING, s.alertname, s.key))
        return [
            {"alertname": s.alertname, "state": s.status.value, "labels": dict(s.labels), "since": iso(s.since)}
            for s in active
        ]

    # ------------------------------------------------------------------------------------------ internals

    def _act(
        self, action: Action, result: Result | None, *, window_reason: str | None
    ) -> list[tuple[str, Notification]]:
        s = action.state
        fields = {"alert": s.alertname, "check": s.check, "key": s.key}
        if action.kind is ActionKind.SUPPRESSED:
            log.info("alert.suppressed", **fields, maintenance=window_reason or "")
            return []
        event = {ActionKind.FIRE: "alert.fired", ActionKind.REMIND: "alert.reminder",
                 ActionKind.FLAPPING: "alert.flapping", ActionKind.RESOLVE: "alert.resolved"}[action.kind]
        extra: dict[str, Any] = {}
        if result is not None:
            extra = {"outcome": result.outcome.value, "status_code": result.status_code}
        (log.warning if action.kind is not ActionKind.RESOLVE else log.info)(event, **fields, **extra)
        note = Notification(
            key=s.key, event=action.kind.value,  # type: ignore[arg-type]
            labels=dict(s.labels), annotations=dict(s.annotations),
            starts_at=s.started_at if s.started_at is not None else action.at, at=action.at,
            ends_at=action.at if action.kind is ActionKind.RESOLVE else None,
        )
        return [(lane.id, note) for lane in self._lanes.values() if lane.accepts(note.event)]

    def _reconcile(self, now: float, *, reason: str) -> None:
        """Resolve (and notify, if it was paged) every alert whose check or rule left the config."""
        assert self._store is not None
        live = self._plans
        self._sync_lanes(start=False)
        deleted: list[str] = []
        rows: list[tuple[str, Notification]] = []
        for key, s in list(self._states.items()):
            plan = live.get(s.check)
            if plan is not None and s.alertname in plan.rules:
                continue
            if s.status is Status.FIRING and s.notified:
                resolved = dataclasses.replace(s, status=Status.INACTIVE, since=now)
                rows.extend(self._act(Action(ActionKind.RESOLVE, resolved, now), None, window_reason=None))
                log.info("alert.orphan_resolved", alert=s.alertname, check=s.check, reason=reason)
            deleted.append(key)
            self._drop_state(key)
        gone = [name for name in self._memory if name not in live]
        for name in gone:
            self._memory.pop(name)
        self._store.commit(delete_states=deleted, enqueue=rows, now=now)
        self._store.forget_checks(gone)
        for lane_id, count in self._store.drop_lanes(set(self._lanes)).items():
            sink = lane_id.split("#", 1)[0]
            self._notifications.labels(sink, "dropped").inc(count)
            log.warning("notification.dropped", sink=sink, count=count, reason="sink removed from config")
        if rows:
            self._wake({lane for lane, _ in rows})

    def _sync_lanes(self, *, start: bool = True) -> None:
        planned = _lanes_for(self._config.alerts.sinks)
        for lane_id in list(self._lanes):
            if lane_id not in planned:
                old = self._lanes.pop(lane_id)
                if old.task is not None:
                    old.task.cancel()
        for lane_id, (sink, index, host) in planned.items():
            lane = self._lanes.get(lane_id)
            if lane is None:
                lane = _Lane(lane_id, sink, index, host)
                lane.next_resend = self._clock.time()
                self._lanes[lane_id] = lane
            else:
                lane.sink, lane.url_index, lane.host = sink, index, host
            if start and lane.task is None:
                lane.task = asyncio.get_running_loop().create_task(self._run_lane(lane), name=f"alerts:{lane_id}")
                lane.wake.set()

    def _wake(self, lane_ids: set[str]) -> None:
        for lane_id in lane_ids:
            lane = self._lanes.get(lane_id)
            if lane is not None:
                lane.wake.set()

    def _precreate_sinks(self, config: Config) -> None:
        for sink in config.alerts.sinks:
            for result in NOTIFICATION_RESULTS:
                self._notifications.labels(sink.display_name, result)

    def _plan(self, config: Config) -> None:
        """Work out per-config lookups once, not per result: checks by name, slack, the watchdog's series."""
        self._plans = _plans_for(config)
        self._slack = _watchdog_slack(config)
        old = self._watchdog_combo
        self._watchdog_combo = (WATCHDOG, watchdog_labels(config)["severity"]) if config.alerts.watchdog else None
        if old is not None and old != self._watchdog_combo:
            self._show_firing(old)  # the watchdog left that series (turned off, or its severity changed)

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

    def _refresh_gauges(self) -> None:
        """Recount every firing series from the states, re-check the watchdog, show the queue depth."""
        counts: dict[_Combo, int] = {}
        for s in self._states.values():
            combo = _firing_combo(s)
            if combo is not None:
                counts[combo] = counts.get(combo, 0) + 1
        shown = {(a, sev) for a in ALERTNAMES for sev in SEVERITIES} | set(self._firing_counts) | set(counts)
        if self._watchdog_combo is not None:
            shown.add(self._watchdog_combo)
        self._firing_counts = counts
        for combo in shown:
            self._show_firing(combo)
        self._depth.set(self._queued)

    def _show_firing(self, combo: _Combo) -> None:
        """Set one series of pam_monitor_alerts_firing from the counts (plus the watchdog, if it is its series)."""
        value = self._firing_counts.get(combo, 0)
        if combo == self._watchdog_combo:
            self._watchdog_up = self._healthy(self._clock.time())
            value += 1 if self._watchdog_up else 0
        self._firing.labels(*combo).set(value)

    def _healthy(self, now: float) -> bool:
        """Results keep arriving: the watchdog is only sent while the runner is alive."""
        if self._slack is None:
            return True
        last = self._last_observe if self._last_observe is not None else self._started_at
        return now - last <= self._slack

    def _context(self) -> SinkContext:
        return SinkContext(service=self._config.service, resend_interval=self._config.alerts.resend_interval,
                           generator_url=f"http://{self._config.listen}/")

    # ------------------------------------------------------------------------------------------ delivery

    async def _run_lane(self, lane: _Lane) -> None:
        while not self._stopping:
            lane.wake.clear()
            try:
                wait = await self._lane_once(lane)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a delivery bug must not kill the lane
                log.exception("notification.lane_error", sink=lane.name, host=lane.host,
                              error_type=type(exc).__name__)
                wait = _POLL
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(wait, _POLL)):
                        await lane.wake.wait()

    async def _lane_once(self, lane: _Lane) -> float:
        """Deliver what is due (or resend to Alertmanager); return how long to sleep."""
        store = self._store
        if store is None:
            return _POLL
        now = self._clock.time()
        rows = store.head(lane.id, _AM_BATCH if lane.is_alertmanager else 1)
        due = []
        for row in rows:
            if row.next_attempt_at > now:
                break
            due.append(row)
        if due:
            await self._deliver(lane, due)
            return 0.0
        if lane.is_alertmanager and not rows and now >= lane.next_resend:
            await self._resend(lane, now)
            return 0.0
        wait = _POLL
        if rows:
            wait = min(wait, rows[0].next_attempt_at - now)
        if lane.is_alertmanager:
            wait = min(wait, lane.next_resend - now)
        return max(0.01, wait)

    async def _deliver(self, lane: _Lane, rows: Sequence[Any]) -> None:
        store = self._store
        assert store is not None
        assert self._http is not None
        notes = [r.notification for r in rows]
        now = self._clock.time()
        result = await _SENDERS[lane.sink.kind](self._http, lane.sink, notes, ctx=self._context(), now=now,
                                                 url_index=lane.url_index)
        ids = [r.id for r in rows]
        fields: dict[str, Any] = {
            "sink": lane.name, "host": lane.host, "count": len(rows), "status_code": result.status_code,
            "events": sorted({n.event for n in notes}), "alerts": sorted({n.alertname for n in notes}),
        }
        if self._store is None:  # closed while the request was in flight: the rows stay for next start
            return
        if result.verdict == "accepted":
            self._queued -= store.delete(ids)
            self._notifications.labels(lane.name, "sent").inc(len(rows))
            log.info("notification.sent", **fields, attempts=rows[0].attempts + 1)
        elif result.verdict == "rejected":
            self._queued -= store.delete(ids)
            self._notifications.labels(lane.name, "rejected").inc(len(rows))
            log.error("notification.rejected", **fields,
                      hint="the sink refused the request (4xx): check its URL, key and headers; not retried")
        else:
            attempts = rows[0].attempts + 1
            if attempts >= lane.sink.max_attempts:
                self._queued -= store.delete(ids)
                self._notifications.labels(lane.name, "failed").inc(len(rows))
                log.error("notification.failed", **fields, attempts=attempts, error=result.error,
                          hint="gave up after max_attempts")
            else:
                delay = backoff(attempts, base=self._backoff_base, cap=self._backoff_cap, rng=self._rng)
                if result.retry_after is not None:
                    delay = min(max(delay, result.retry_after), self._backoff_cap)
                store.reschedule(ids, attempts=attempts, next_attempt_at=now + delay)
                self._notifications.labels(lane.name, "retried").inc(len(rows))
                log.warning("notification.retry", **fields, attempts=attempts, error=result.error,
                            retry_in_s=round(delay, 3))
        self._depth.set(self._queued)

    async def _resend(self, lane: _Lane, now: float) -> None:
        """Re-post every firing alert that was notified (and the watchdog) so Alertmanager keeps them."""
        assert self._http is not None
        lane.next_resend = now + self._config.alerts.resend_interval
        notes = [
            Notification(key=s.key, event="flapping" if s.flapping else "firing", labels=dict(s.labels),
                         annotations=dict(s.annotations),
                         starts_at=s.started_at if s.started_at is not None else s.since, at=now)
            for s in self._states.values() if s.status is Status.FIRING and s.notified
        ]
        if self._config.alerts.watchdog and self._healthy(now):
            notes.append(Notification(
                key=WATCHDOG, event="firing", labels=watchdog_labels(self._config),
                annotations={"summary": f"pam-monitor for {self._config.service} is running",
                             "runbook": "Route to a dead man's switch; silence means pam-monitor is down."},
                starts_at=self._started_at, at=now,
            ))
        self._refresh_gauges()
        if not notes:
            return
        result = await alertmanager.send(self._http, lane.sink, notes, ctx=self._context(), now=now,
                                         url_index=lane.url_index)
        fields = {"sink": lane.name, "host": lane.host, "count": len(notes), "status_code": result.status_code}
        if result.verdict == "accepted":
            log.debug("notification.resent", **fields)
        else:
            # The next resend tries again; only the first failure in a row is worth a warning.
            log.warning("notification.resend_failed", **fields, error=result.error)
