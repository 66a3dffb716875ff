"""The long-running daemon: scheduler, HTTP server, alert engine, SIGHUP reload and bounded SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import gc
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from alerts.judge import credentials
from alerts.links import check_links
from monitor import __version__
from monitor.core.clock import Clock, SystemClock
from monitor.core.config import Config, HeartbeatCheck, parse_listen
from monitor.core.errors import ConfigError, StateDirError, StoreError
from monitor.core.results import Result
from monitor.core.secrets import Redactor, collect_secrets
from monitor.heartbeat import HeartbeatEndpoint, HeartbeatTable
from monitor.history import FLUSH_EVERY_S, SUMMARY_EVERY_S, History
from monitor.metrics import Metrics
from monitor.refusals import StoredRefusals
from monitor.reload import RELOAD_TIMEOUT_S, load_in_child
from monitor.runner import Runner
from monitor.saturation import Saturation
from monitor.schedule import MonotonicScheduler, SchedulerClock
from monitor.server import LoopCall, ServerThread, bind_socket, build_server, create_app
from monitor.slo import budget, budgets, specs
from monitor.state import State
from probes.deps import Deps, RefusalMemory, build_deps
from probes.heartbeat import BOOK, HeartbeatBook
from probes.identity import token_expiries

log = structlog.get_logger("pam_monitor.daemon")


class Engine(Protocol):
    """What the daemon needs from the alert engine (alerts.AlertEngine).

    The daemon calls start() and aclose(timeout) rather than `async with`: its shutdown gives the flush whatever
    is left of shutdown_timeout once the in-flight runs are done, at that point in the sequence.
    """

    async def start(self) -> None:
        """Open persisted state and start delivery; StoreError (StateDirError for a config problem) when the state
        cannot be used."""
        ...

    def observe(self, result: Result) -> None:
        """Feed one result to the alert rules."""
        ...

    def active_alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts (and the watchdog while it is up) for /status, with holds explained."""
        ...

    def state_problem(self) -> str | None:
        """None while alert state is being saved; otherwise why not (what /readyz says)."""
        ...

    @property
    def saturation_every(self) -> float:
        """Seconds between two calls of `saturation`."""
        ...

    def saturation(self, skipped_total: int) -> None:
        """Judge MonitorSaturated from the runs skipped since start (every reason)."""
        ...

    def slo_history(self, rows: Iterable[tuple[str, float, float, int, int]],
                    budget_left: Callable[[str], float | None]) -> int:
        """Restore the ErrorBudgetBurn minute counts from history buckets; learn where the budget left comes from."""
        ...

    async def reload(self, config: Config) -> None:
        """Adopt a new configuration."""
        ...

    async def aclose(self, timeout: float) -> None:
        """Flush what can be flushed within `timeout`, then stop."""
        ...


EngineFactory = Callable[[Config, CollectorRegistry, Clock], Engine]
EXIT_STATE_CONFIG, EXIT_STATE_UNUSABLE = 2, 3
"""Start-up exit codes: state_dir cannot be created or written (a configuration problem); the state database is
unusable (corrupt, written by a newer version, on a full disk, held by another process)."""


def _freeze_long_lived() -> None:
    """Leave everything alive now (modules, config, jobs, series) out of the cyclic collector's scans.

    They live until the next reload, and every full collection would walk them (~300,000 objects at 1,000
    checks): bench/README.md measured 8 % less CPU per probe and p99 lateness 20-38 ms -> 9 ms. A reload
    unfreezes first, so cycles left by the previous configuration are still collected.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _share_equal_parts(config: Config) -> None:
    """Let equal parts of the config's frozen models be one object: empty dicts and lists, and strings (interned).

    1,000 checks of one shape hold eight empty containers each (~0.5 KB) and their own copies of the same target,
    path and kind strings. The models are frozen and nothing changes a config's containers in place (model_copy
    already shares containers between copies), so sharing changes nothing a caller can see. (Pydantic's record of
    the fields each model was given, `model_fields_set`, is one set per model, ~0.95 KB a check; pydantic offers
    no public way to share it, so it is left alone.)
    """
    empty_dict: dict[Any, Any] = {}
    empty_list: list[Any] = []
    stack: list[Any] = [config]
    while stack:
        value = stack.pop()
        if isinstance(value, BaseModel):
            if value.model_config.get("frozen"):
                attrs = value.__dict__
                for name, item in attrs.items():
                    if type(item) is str:
                        attrs[name] = sys.intern(item)
                    elif type(item) is dict and not item:
                        attrs[name] = empty_dict
                    elif type(item) is list and not item:
                        attrs[name] = empty_list
            stack.extend(value.__dict__.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())


class Daemon:
    """One running pam-monitor: owns the event-loop resources and their lifecycle."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None,
        listen_override: str | None = None,
        shard: tuple[int, int] | None = None,
        engine_factory: EngineFactory | None = None,
        clock: Clock | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.listen_override = listen_override
        self.shard = shard
        self.clock = clock or SystemClock()
        self.redactor = redactor or Redactor()
        self.metrics = Metrics()
        self.state = State(self.clock.monotonic)
        self.saturation = Saturation(self.metrics)
        self.engine: Engine | None = (
            engine_factory(config, self.metrics.registry, self.clock) if engine_factory else None
        )
        self.deps: Deps | None = None
        # Endpoints' learned refusal shapes, one object across reloads (kept in state_dir once the engine started).
        self.refusals: RefusalMemory = RefusalMemory()
        self.runner: Runner | None = None
        self.scheduler: MonotonicScheduler | None = None
        self.server: ServerThread | None = None
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False
        self.reload_timeout = RELOAD_TIMEOUT_S
        self._background: set[asyncio.Task[Any]] = set()
        # Calls of heartbeat checks: kept across reloads, and across restarts in the state database.
        self.heartbeats = HeartbeatBook(self.clock.time)
        self._heartbeat_checks: dict[str, HeartbeatCheck] = {}
        self._heartbeat_table: HeartbeatTable | None = None
        self.history: History | None = None

    # -- control -------------------------------------------------------------------------------------------

    def request_stop(self, signame: str = "request") -> None:
        """Begin a graceful shutdown (SIGTERM, SIGINT)."""
        if not self._stop.is_set():
            log.info("daemon.stopping", signal=signame, shutdown_timeout_s=self.config.shutdown_timeout)
            self._stop.set()

    def request_reload(self) -> None:
        """Reload the config file (SIGHUP). Signals that arrive during a reload coalesce into one more reload
        after it (the file may have changed since it was read); a storm costs at most two loads."""
        if self._stop.is_set():
            return
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self._reload_until_current())
        else:
            self._reload_again = True

    async def _reload_until_current(self) -> None:
        while True:
            self._reload_again = False
            await self.reload()
            if not self._reload_again or self._stop.is_set():
                return

    async def reload(self) -> bool:
        """Load the file again in a child process (monitor/reload.py: time and memory budget, killed when the
        daemon stops); on any problem keep the running config, set the reload metric to 0 and log one line."""
        try:
            new = await load_in_child(self.config_path, listen=self.listen_override, shard=self.shard,
                                      timeout=self.reload_timeout)
        except ConfigError as exc:
            self.metrics.reload_ok.set(0)
            log.error("config.reload_failed", path=str(self.config_path) if self.config_path else None,
                      problems=exc.problems, kept="previous configuration")
            return False
        if new.listen != self.config.listen:
            log.warning("config.listen_change_ignored", running=self.config.listen, requested=new.listen,
                        hint="restart the daemon to change listen")
            new = new.model_copy(update={"listen": self.config.listen})
        self._adopt(new)
        if self.engine is not None:
            await self.engine.reload(new)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_ts.set(self.clock.time())
        log.info("config.reloaded", checks=len(self.runner.checks) if self.runner else 0)
        return True

    def _adopt(self, config: Config) -> None:
        """Swap in a new config: new deps and jobs; old runs finish on the old deps, which close after them."""
        assert self.scheduler is not None
        old_runner, old_deps = self.runner, self.deps
        self.config = config
        _share_equal_parts(config)
        self.redactor.update(collect_secrets(config))
        self.deps = build_deps(config, self.clock, self.refusals)
        self.deps.resources[BOOK] = self.heartbeats
        held, deps = credentials.configured(config), self.deps
        self.metrics.credentials = lambda: {**held, **token_expiries(deps)}
        self.state.links = check_links(config)
        self._heartbeat_checks = {c.name: c for c in config.checks if isinstance(c, HeartbeatCheck) and c.enabled}
        self.heartbeats.watch(self._heartbeat_checks)
        if old_runner is not None:
            old_runner.stop(self.scheduler)
        self.runner = Runner(
            config, self.deps, self.metrics, self.state,
            on_result=self._on_result, redact=self.redactor.scrub,
            saturation=self.saturation,
        )
        self.runner.start(self.scheduler)
        _freeze_long_lived()
        if old_deps is not None and old_runner is not None:
            # Old runs are bounded by the old checks' timeouts, not the new ones.
            longest = max((c.timeout for c in old_runner.checks.values()), default=0.0)
            self._spawn(self._close_after(old_deps, set(old_runner.in_flight), longest))

    async def _close_after(self, deps: Deps, pending: set[asyncio.Task[Any]], limit: float) -> None:
        if pending:
            await asyncio.wait(pending, timeout=limit + 1)
        await deps.aclose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        host, port = parse_listen(self.config.listen)
        try:
            # Bind first, and here rather than in uvicorn: its bind failure is a SystemExit that would tear the
            # event loop down, and nothing else should start when nobody can scrape us.
            sock = bind_socket(host, port)
        except OSError as exc:
            log.error("daemon.listen_failed", listen=self.config.listen, error=exc.strerror or str(exc),
                      hint="another process holds the port, or the address is not on this host; change --listen")
            await self._shutdown()
            return 1
        self.metrics.reload_ok.set(1)
        self.metrics.reload_ts.set(self.clock.time())
        self.saturation.lag.start()
        # The scheduler's "now" is the wall clock at start plus monotonic time since: an NTP step neither stops
        # probing nor invents skipped runs (monitor/schedule.py).
        self.scheduler = MonotonicScheduler(SchedulerClock(wall=self.clock.time))
        alerts = None
        if self.engine is not None:
            try:
                await self.engine.start()
            except StoreError as exc:
                # One line, no traceback: what is wrong, with which path, and the fix (persist/database.py words it).
                code = EXIT_STATE_CONFIG if isinstance(exc, StateDirError) else EXIT_STATE_UNUSABLE
                log.error("daemon.state_unusable", error=str(exc), exit_code=code)
                print(f"pam-monitor: {exc}", file=sys.stderr, flush=True)
                sock.close()
                await self._shutdown()
                return code
            self.state.alerts = self.engine.active_alerts
            self.state.persistence = self.engine.state_problem
            self.refusals = StoredRefusals.open(self.config.state_dir)
            alerts = LoopCall(loop, self.engine.active_alerts)
            self._spawn(self._judge_saturation(self.engine))
        self._open_heartbeat_table()
        self._open_history()
        self._adopt(self.config)
        self.scheduler.start()
        # Served from its own thread and event loop: a flood of scrapers never delays a probe.
        beats = HeartbeatEndpoint(self.heartbeats, lambda: self._heartbeat_checks, self.redactor.scrub,
                                  self.clock.monotonic)
        app = create_app(self.state, self.metrics, lambda: self.config.service, alerts=alerts,
                         clock=self.clock.time, config=lambda: self.config, heartbeat=beats)
        self.server = ServerThread(build_server(app, host, port), sock)
        self.server.start()
        log.info("daemon.started", version=__version__, listen=self.config.listen, service=self.config.service,
                 checks=len(self.runner.checks) if self.runner else 0,
                 shard=f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
                 sinks=[s.display_name for s in self.config.alerts.sinks])
        await self._stop.wait()
        await self._shutdown()
        log.info("daemon.stopped")
        return 0

    def _on_result(self, result: Result) -> None:
        """Each finished run: into the history's in-memory buckets, then to the alert engine."""
        if self.history is not None:
            self.history.record(result)
        if self.engine is not None:
            self.engine.observe(result)

    def _open_history(self) -> None:
        """Open the availability/latency rollups in the state database; without it (a state_dir problem the
        alert store reports on its own) /status has no `over_time`."""
        if self.engine is None:
            return
        try:
            self.history = History(self.config.state_dir, self.clock.time)
        except (OSError, sqlite3.Error) as exc:
            log.warning("history.unusable", state_dir=str(self.config.state_dir), error=str(exc))
            return
        history = self.history
        self.state.over_time = history.summary
        self.state.slos = lambda: budgets(self.config, history.summary()) if self.config.slos or any(
            c.slo for c in self.config.checks) else []
        self._restore_burn(history)
        self._spawn(self._flush_history(history))

    def _restore_burn(self, history: History) -> None:
        """Give the alert engine the SLOs' history (ErrorBudgetBurn's long windows survive a restart) and the
        budget left per SLO for its annotations; before the scheduler starts, so no run is counted twice."""
        engine, slos = self.engine, specs(self.config)
        if engine is None or not slos:
            return
        longest = max((a.long for s in slos for a in s.alerts), default=0.0)
        checks = {name for s in slos for name in s.checks}
        try:
            rows = history.buckets(checks, self.clock.time() - longest)
        except sqlite3.Error as exc:
            log.warning("history.slo_restore_failed", error=str(exc))
            rows = []

        def budget_left(slo: str) -> float | None:
            spec = next((s for s in specs(self.config) if s.name == slo), None)
            return None if spec is None else budget(spec, history.summary()).get("budget_left")

        used = engine.slo_history(rows, budget_left)
        log.info("alerts.slo_counts_restored", slos=len(slos), buckets=used)

    async def _flush_history(self, history: History) -> None:
        """Write the history's pending buckets every FLUSH_EVERY_S and recompute its summary every
        SUMMARY_EVERY_S (at once on start-up), off the event loop, until cancelled."""
        loop = asyncio.get_running_loop()
        refreshed = float("-inf")
        while True:
            try:
                if loop.time() - refreshed >= SUMMARY_EVERY_S:
                    refreshed = loop.time()
                    await asyncio.to_thread(history.refresh)
                else:
                    await asyncio.to_thread(history.flush)
            except Exception as exc:
                log.error("history.flush_failed", error_type=type(exc).__name__, error=str(exc))
            await asyncio.sleep(FLUSH_EVERY_S)

    def _open_heartbeat_table(self) -> None:
        """Load the heartbeat calls saved by the last run and save new ones; without the table (a state_dir
        problem the alert store reports on its own) they are kept in memory only."""
        if not any(isinstance(c, HeartbeatCheck) for c in self.config.checks) and self.engine is None:
            return
        try:
            self._heartbeat_table = HeartbeatTable(self.config.state_dir)
            self.heartbeats.load(self._heartbeat_table.load())
        except (OSError, sqlite3.Error) as exc:
            log.warning("heartbeat.table_unusable", state_dir=str(self.config.state_dir), error=str(exc),
                        kept="in memory until restart")
            return
        self.heartbeats.persist_with(self._heartbeat_table.save)

    async def _judge_saturation(self, engine: Engine) -> None:
        """Hand the alert engine the skipped-run count at its cadence (MonitorSaturated), until cancelled."""
        while True:
            await asyncio.sleep(engine.saturation_every)
            try:
                engine.saturation(self.saturation.total)
            except Exception as exc:
                log.error("alerts.saturation_failed", error_type=type(exc).__name__, error=str(exc))

    async def _shutdown(self) -> None:
        """Stop within shutdown_timeout: let in-flight runs finish, cancel the rest, flush alerts, close."""
        loop = asyncio.get_running_loop()
        budget = self.config.shutdown_timeout
        deadline = loop.time() + budget
        if self._reloading is not None and not self._reloading.done():
            self._reloading.cancel()  # kills the reload's child process; the running config is the one to stop
            await asyncio.wait([self._reloading], timeout=1.0)
            log.info("config.reload_abandoned", reason="the daemon is stopping")
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.pause()
        in_flight = set(self.runner.in_flight) if self.runner else set()
        if in_flight:
            done, pending = await asyncio.wait(in_flight, timeout=budget * 0.5)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=0.5)
            log.info("daemon.runs_drained", finished=len(done), cancelled=len(pending))
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.engine is not None:
            await self.engine.aclose(max(0.1, (deadline - loop.time()) * 0.7))
        if self.server is not None:
            await self.server.stop(deadline - loop.time())
        for task in list(self._background):
            task.cancel()
        await self.saturation.lag.aclose()
        if self.deps is not None:
            await self.deps.aclose()
        if isinstance(self.refusals, StoredRefusals):
            self.refusals.close()
        if self._heartbeat_table is not None:
            self._heartbeat_table.close()
        if self.history is not None:
            try:
                self.history.close()
            except sqlite3.Error as exc:
                log.warning("history.close_failed", error=str(exc))
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
