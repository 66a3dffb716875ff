"""The outbox worker: one task per delivery lane drains its queue in order, in batches, with retries and backoff,
and re-posts firing alerts to the sinks that want it.

A lane is one URL of one sink (`<sink>#<index>`), a strict FIFO over the persisted outbox. Sinks are known only
through their `SinkSpec` (alerts.sinks.spec): how many lanes, the batch size, which notifications they take, whether
they want firing alerts re-posted every `resend_interval`. A 2xx is `sent`; a 4xx (not 408/429) is `rejected`
and not retried (a configuration error); anything else is retried with exponential backoff and full jitter until
the sink's `max_attempts`, then `failed`.

A receiver that refuses a batch's content (400 or 422: Alertmanager does so for a whole list when one alert has a
label it dislikes) has the batch split in halves until each refused notification stands alone: that one is
quarantined (kept in the state database, logged with its alert key and the receiver's reason, counted
`rejected`), the others are delivered. Re-posts are split the same way, and an alert refused alone while others
were accepted is left out of later re-posts while it fires, so it never again blocks the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import prometheus_client
import structlog

from alerts.links import status_base
from alerts.model import Notification, SinkContext
from alerts.persist.mirror import Journal
from alerts.persist.rows import OutboxRow
from alerts.sinks.registry import SINKS
from alerts.sinks.spec import SendResult, SinkSpec, http_client
from monitor.core.clock import Clock, SteadyClock
from monitor.core.config import Config

log = structlog.get_logger("pam_monitor.alerts")

NOTIFICATION_RESULTS: tuple[str, ...] = ("sent", "retried", "rejected", "failed", "dropped")
"""sent: a sink accepted it; retried: an attempt failed and will be retried; rejected: a 4xx config error
(not retried); failed: given up after max_attempts; dropped: discarded because its sink left the config."""
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
_POLL = 1.0  # a lane re-reads the clock at least this often (an injected clock may jump)
POISON_AFTER = 3
"""A row whose sending raises this many times (not an HTTP failure: the sink's code cannot send it) is quarantined."""

Resendable = Callable[[float], Sequence[Notification]]
"""`resendable(now)`: what a re-posting sink should hold as firing right now (the alerts and the watchdog)."""


def backoff(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
            rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based): full jitter, uniform in [0, min(cap, base*2^n)).

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads replicas that failed
    together so they do not retry in lock step.
    """
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return (rng or random).uniform(0, ceiling)


def lane_id(sink_name: str, index: int) -> str:
    """The outbox name of lane `index` of a sink (sink names hold no '#')."""
    return f"{sink_name}#{index}"


def sink_of(lane: str) -> str:
    """The sink name a lane belongs to."""
    return lane.split("#", 1)[0]


@dataclass(eq=False)
class _Lane:
    """One delivery queue: one URL of one sink. Strict FIFO."""

    id: str
    sink: Any  # the sink's config model
    spec: SinkSpec[Any]
    index: int
    host: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    next_resend: float = 0.0
    resend_failing: bool = False  # the last re-post failed (only the first failure of a spell is a warning)
    refused: set[str] = field(default_factory=set)  # alert keys the receiver refused alone: left out of re-posts
    isolate: bool = False  # a batch raised: send one row at a time until the row that raises is quarantined

    @property
    def name(self) -> str:
        return str(self.sink.display_name)


class Delivery:
    """Delivers the outbox to the configured sinks; owns the notification metrics and the HTTP client."""

    def __init__(
        self,
        config: Config,
        *,
        registry: prometheus_client.CollectorRegistry,
        clock: Clock,
        resendable: Resendable,
        sinks: Mapping[str, SinkSpec[Any]] = SINKS,
        http: httpx.AsyncClient | None = None,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        # Retries and re-posts are scheduled on a steady clock: the wall clock read once plus monotonic time since.
        # An NTP step of the wall clock then neither stops re-posts (Alertmanager would let every alert and the
        # watchdog expire) nor makes retries wait an hour. Payload times (startsAt, endsAt) stay on the wall clock.
        self._steady_clock = SteadyClock(clock.time, clock.monotonic)
        self._resendable = resendable
        self._specs = sinks
        self._http = http
        self._own_http = http is None
        self._http_env = False  # the alerts.trust_env the client was made with
        self._retired: list[httpx.AsyncClient] = []
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = rng or random.Random()  # noqa: S311 - jitter only
        self._store: Journal | None = None
        self._lanes: dict[str, _Lane] = {}
        self._queued = 0  # outbox rows; read from the outbox at start, then counted on enqueue and delete
        self._stopping = False
        self._notifications = prometheus_client.Counter(
            "pam_monitor_notifications", "Notification delivery attempts by sink and result "
            "(sent, retried, rejected, failed, dropped).", ["sink", "result"], registry=registry,
        )
        self._depth = prometheus_client.Gauge(
            "pam_monitor_notification_queue_depth", "Notifications waiting in the outbox.", registry=registry,
        )
        self.configure(config)

    # ------------------------------------------------------------------------------------------ plan

    def configure(self, config: Config) -> None:
        """Adopt a config: create the sinks' metric series, plan lanes (started at once if delivery runs)."""
        self._config = config
        self._ctx = SinkContext(service=config.service, resend_interval=config.alerts.resend_interval,
                                generator_url=status_base(config))
        planned: dict[str, tuple[Any, SinkSpec[Any], int, str]] = {}
        for sink in config.alerts.sinks:
            for result in NOTIFICATION_RESULTS:
                self._notifications.labels(sink.display_name, result)
            spec = self._specs[sink.kind]
            for index, host in enumerate(spec.lanes(sink)):
                planned[lane_id(sink.display_name, index)] = (sink, spec, index, host)
        for gone in [lane for lane in self._lanes if lane not in planned]:
            old = self._lanes.pop(gone)
            if old.task is not None:
                old.task.cancel()
        for lid, (sink, spec, index, host) in planned.items():
            lane = self._lanes.get(lid)
            if lane is None:
                lane = self._lanes[lid] = _Lane(lid, sink, spec, index, host, next_resend=self._steady())
            else:
                lane.sink, lane.spec, lane.index, lane.host = sink, spec, index, host
            if self._store is not None:
                self._start_lane(lane)

    def route(self, note: Notification, *, direct: bool = True,
              inhibiting: bool = True) -> list[tuple[str, Notification]]:
        """Outbox rows for a notification: one per lane whose sink takes it, among the direct sinks and/or those
        that honour inhibition themselves (a held alert goes to the latter only, its release to the former)."""
        return [
            (lane.id, note) for lane in self._lanes.values()
            if (inhibiting if lane.spec.honours_inhibition else direct) and lane.spec.accepts(note)
        ]

    def renews(self, lane: str) -> bool:
        """Whether a lane's sink re-posts firing alerts, which then end on their own when nobody renews them."""
        found = self._lanes.get(lane)
        return found is not None and found.spec.resends

    def sink_names(self) -> list[str]:
        """The configured sinks, by display name."""
        return sorted({lane.name for lane in self._lanes.values()})

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self, store: Journal) -> None:
        """Deliver from this outbox: one task per lane (they run once the caller yields to the event loop)."""
        self._store = store
        self._stopping = False
        for lane in self._lanes.values():
            self._start_lane(lane)

    def drop_unplanned(self) -> None:
        """Delete (and count as dropped) the queued rows of lanes that left the config."""
        if self._store is None:
            return
        for lane, count in self._store.drop_lanes(set(self._lanes)).items():
            sink = sink_of(lane)
            self._notifications.labels(sink, "dropped").inc(count)
            log.warning("notification.dropped", sink=sink, count=count, reason="sink removed from config")

    def enqueued(self, rows: Sequence[tuple[str, Notification]]) -> None:
        """Rows were committed to the outbox: count them and wake their lanes."""
        if not rows:
            return
        self._queued += len(rows)
        self._depth.set(self._queued)
        for lid in {lane for lane, _ in rows}:
            lane = self._lanes.get(lid)
            if lane is not None:
                lane.wake.set()

    def recount(self) -> None:
        """Read the queue depth from the outbox again."""
        if self._store is not None:
            self._queued = self._store.depth()
        self._depth.set(self._queued)

    @property
    def queued(self) -> int:
        """Notifications waiting in the outbox."""
        return self._queued

    async def aclose(self, timeout: float) -> None:
        """Try to deliver what is queued within `timeout` seconds, then stop the lanes; the outbox persists."""
        store = self._store
        if store is None:
            return
        store.hurry(self._steady())
        for lane in self._lanes.values():
            lane.wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while store.depth() > 0 and loop.time() < deadline:  # noqa: ASYNC110 - the lanes empty it
            await asyncio.sleep(0.02)
        self._stopping = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes.values():
            lane.task = None
        self._store = None
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None
        for old in self._retired:
            await old.aclose()
        self._retired.clear()

    # ------------------------------------------------------------------------------------------ lanes

    def _client(self) -> httpx.AsyncClient:
        """The sinks' HTTP client, made at the first send: building one loads the CA bundle (~3 MB resident),
        which a daemon without sinks never needs."""
        if self._own_http and self._http is not None and self._http_env != self._config.alerts.trust_env:
            self._retired.append(self._http)  # a reload changed alerts.trust_env: requests in flight finish on it
            self._http = None
        if self._http is None:
            self._http = http_client(self._config)
            self._http_env = self._config.alerts.trust_env
        return self._http

    def _start_lane(self, lane: _Lane) -> None:
        if lane.task is None:
            lane.task = asyncio.get_running_loop().create_task(self._run_lane(lane), name=f"alerts:{lane.id}")
            lane.wake.set()

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
        """Deliver what is due (or re-post what is firing); return how long to sleep."""
        store = self._store
        if store is None:
            return _POLL
        steady = self._steady()
        rows = store.head(lane.id, 1 if lane.isolate else lane.spec.batch_size)
        if not rows:
            lane.isolate = False
        due = []
        for row in rows:
            # A row never tried is due at once, whatever wall-clock time the engine stamped it with.
            if row.attempts > 0 and row.next_attempt_at > steady:
                break
            due.append(row)
        if due:
            await self._deliver(lane, due)
            return 0.0
        resends = lane.spec.resends
        if resends and not rows and steady >= lane.next_resend:
            await self._resend(lane, steady)
            return 0.0
        wait = _POLL
        if rows:
            wait = min(wait, rows[0].next_attempt_at - steady)
        if resends:
            wait = min(wait, lane.next_resend - steady)
        return max(0.01, wait)

    def _steady(self) -> float:
        """Seconds on the steady clock: the wall clock at start plus monotonic time since (never steps)."""
        return self._steady_clock.timestamp()

    async def _deliver(self, lane: _Lane, rows: Sequence[OutboxRow]) -> bool:
        """Send `rows` as one batch and settle them. A batch whose content the receiver refused (400/422) is split
        in halves, each delivered the same way, until the refused rows stand alone. False when the lane must stop
        here (a retry is scheduled, or delivery closed): the rows behind keep their place in the queue."""
        notes = [r.notification for r in rows]
        now = self._clock.time()
        http = self._client()
        try:
            result = await lane.spec.send(http, lane.sink, notes, ctx=self._ctx, now=now, lane=lane.index)
        except Exception as exc:  # a row the sink's code cannot turn into a request: it must not block the lane
            self._poisoned(lane, rows, exc)
            return False
        store = self._store
        if store is None:  # closed while the request was in flight: the rows stay for next start
            return False
        if result.refused_content and len(rows) > 1:
            log.info("notification.batch_refused", sink=lane.name, host=lane.host, count=len(rows),
                     status_code=result.status_code, hint="splitting the batch to find what the receiver refuses")
            half = len(rows) // 2
            return await self._deliver(lane, rows[:half]) and await self._deliver(lane, rows[half:])
        if result.refused_content:
            self._refused(lane, rows[0], result)
            return True
        ids = [r.id for r in rows]
        fields: dict[str, Any] = {
            "sink": lane.name, "host": lane.host, "count": len(rows), "status_code": result.status_code,
            "events": sorted({n.event.value for n in notes}), "alerts": sorted({n.alertname for n in notes}),
        }
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
                store.reschedule(ids, attempts=attempts, next_attempt_at=self._steady() + delay)
                self._notifications.labels(lane.name, "retried").inc(len(rows))
                log.warning("notification.retry", **fields, attempts=attempts, error=result.error,
                            retry_in_s=round(delay, 3))
                self._depth.set(self._queued)
                return False
        self._depth.set(self._queued)
        return True

    def _refused(self, lane: _Lane, row: OutboxRow, result: SendResult) -> None:
        """The receiver refused this one notification's content: keep it in the quarantine table (never retried,
        never blocking the lane), say which alert and what the receiver said."""
        store = self._store
        assert store is not None
        note = row.notification
        reason = result.reason or "no reason given"
        if store.quarantine(row, f"rejected by {lane.name} ({result.status_code}): {reason}", report=False):
            self._queued -= 1
        self._notifications.labels(lane.name, "rejected").inc()
        log.error("notification.rejected", sink=lane.name, host=lane.host, status_code=result.status_code,
                  alert=note.alertname, key=note.key, notification=note.event.value, reason=reason,
                  hint="the receiver refused this alert's content (a label or annotation it does not accept); it is "
                       "kept in the quarantine table of the state database, the other alerts are delivered")
        self._depth.set(self._queued)

    def _poisoned(self, lane: _Lane, rows: Sequence[OutboxRow], exc: Exception) -> None:
        """Sending raised: with a batch, the lane sends one row at a time until it finds the one that raises; a
        single row is retried with backoff, then quarantined after POISON_AFTER attempts, and the lane goes on."""
        store = self._store
        if store is None:
            return
        # The exception's text is never logged or kept: a sink's error may quote its URL, which can hold a token.
        fields = {"sink": lane.name, "host": lane.host, "error_type": type(exc).__name__}
        if len(rows) > 1:
            lane.isolate = True
            log.warning("notification.batch_error", **fields, count=len(rows),
                        hint="sending one at a time to find the row that fails")
            return
        row = rows[0]
        attempts = row.attempts + 1
        if attempts < POISON_AFTER:
            delay = backoff(attempts, base=self._backoff_base, cap=self._backoff_cap, rng=self._rng)
            store.reschedule([row.id], attempts=attempts, next_attempt_at=self._steady() + delay)
            log.warning("notification.send_error", **fields, alerts=[row.notification.alertname], attempts=attempts)
            return
        if store.quarantine(row, f"{lane.name} could not send it: {type(exc).__name__}"):
            self._queued -= 1
        lane.isolate = False
        self._depth.set(self._queued)

    async def _resend(self, lane: _Lane, steady: float) -> None:
        """Re-post what is firing, so a sink that keeps alerts only for a while (Alertmanager) keeps them."""
        lane.next_resend = steady + self._config.alerts.resend_interval
        now = self._clock.time()  # the payload's times (endsAt ahead of now) are read by the sink on its wall clock
        firing = [n for n in self._resendable(now) if lane.spec.accepts(n)]
        lane.refused &= {n.key for n in firing}  # an alert that stopped firing may be tried again when it returns
        notes = [n for n in firing if n.key not in lane.refused]
        if not notes:
            return
        result = await self._post(lane, notes, now)
        if result.refused_content and len(notes) > 1:
            refused, accepted = await self._split_resend(lane, notes, now, result)
            if refused and accepted:  # some went through: what was refused alone is the alerts', not the sink's
                for note, alone in refused:
                    lane.refused.add(note.key)  # not counted: re-posts are not notifications (nor is a sent one)
                    log.error("notification.resend_refused", sink=lane.name, host=lane.host,
                              status_code=alone.status_code, alert=note.alertname, key=note.key,
                              reason=alone.reason or "no reason given",
                              hint="the receiver refuses this alert's content; it is left out of re-posts while "
                                   "it fires, the other alerts are re-posted")
                result = SendResult("accepted", status_code=200)
        fields = {"sink": lane.name, "host": lane.host, "count": len(notes), "status_code": result.status_code}
        if result.verdict == "accepted":
            if lane.resend_failing:
                log.info("notification.resend_recovered", **fields)
            else:
                log.debug("notification.resent", **fields)
            lane.resend_failing = False
        else:
            # The next resend tries again; only the first failure in a row is worth a warning (a sink down for an
            # hour would otherwise log 60 of them), the rest are info.
            (log.info if lane.resend_failing else log.warning)("notification.resend_failed", **fields,
                                                               error=result.error)
            lane.resend_failing = True

    async def _post(self, lane: _Lane, notes: Sequence[Notification], now: float) -> SendResult:
        return await lane.spec.send(self._client(), lane.sink, notes, ctx=self._ctx, now=now, lane=lane.index)

    async def _split_resend(self, lane: _Lane, notes: Sequence[Notification], now: float,
                            result: SendResult) -> tuple[list[tuple[Notification, SendResult]], int]:
        """`notes` were answered `result`: while the receiver refuses the content, post each half again. Returns
        the notifications refused alone (with their answers) and how many were accepted."""
        if result.verdict == "accepted":
            return [], len(notes)
        if not result.refused_content:
            return [], 0  # another failure: nothing learned about the alerts
        if len(notes) == 1:
            return [(notes[0], result)], 0
        half = len(notes) // 2
        refused: list[tuple[Notification, SendResult]] = []
        accepted = 0
        for part in (notes[:half], notes[half:]):
            found, ok = await self._split_resend(lane, part, now, await self._post(lane, part, now))
            refused += found
            accepted += ok
        return refused, accepted
