"""CPU per `AlertEngine.observe()`, in-process: N checks, M results (mostly ok plus scripted failures), no sinks.

    .venv/bin/python -m bench.engine_observe                       # 1,000 checks, 20,000 results, medians of 3
    .venv/bin/python -m bench.engine_observe --checks 100 --results 5000

Results go round-robin over the checks, one per `interval / checks` seconds of an injected clock (so 1,000 checks
at 2 s is 500 results/s of simulated time). Every 4 rounds one check answers 500 and another times out for two
rounds (ContractRegression and EndpointDown fire), then both heal for two rounds (they resolve). Categories:
- `first`: the first result of each check (its memory is written once),
- `ok`: a passing result on a check with no scripted trouble (the steady state, nearly every result),
- `scripted`: the failing and healing results of the scripted checks.
CPU is `time.process_time_ns()` around each call (its own cost is printed as `timer`); `all` is one
process_time delta over the whole loop divided by M, so it carries no timer cost. A fourth, untimed pass counts
SQLite transactions (BEGIN) and statements with a trace callback, and how many
`pam_monitor_alerts_firing` series were set, per category.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prometheus_client
import structlog

from alerts import AlertEngine
from alerts.persist.database import Store
from monitor.core.config import Config
from monitor.core.results import Outcome, Result
from probes import RULES_BY_KIND

CATEGORIES = ("first", "ok", "scripted")
T0 = 1_767_225_600.0


class Clock:
    """A clock the feeder moves: one step per result."""

    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        """Wall-clock seconds."""
        return self.now

    def monotonic(self) -> float:
        """The same reading (the engine only uses time())."""
        return self.now


def build_config(checks: int, interval: float, state_dir: Path) -> Config:
    """N http checks on one target, as bench.run generates them; no sinks, watchdog on (the default)."""
    return Config.model_validate({
        "service": "bench",
        "state_dir": str(state_dir),
        "defaults": {"interval": f"{interval}s", "timeout": f"{min(1.0, interval / 2)}s"},
        "targets": {"nginx": {"base_url": "http://127.0.0.1:1"}},
        "checks": [
            {"name": f"bench_{i:05d}", "kind": "http", "target": "nginx", "path": "/health",
             "expect": {"status": [200]}}
            for i in range(checks)
        ],
    })


def _victims(cycle: int, checks: int) -> dict[int, Outcome]:
    """The checks that break in a cycle: one answers 500, another (half-way round) times out."""
    return {(cycle * 37 + checks // 2) % checks: Outcome.TIMEOUT, (cycle * 37) % checks: Outcome.SERVER_ERROR}


def script(checks: int, count: int, interval: float) -> list[tuple[str, float, Result]]:
    """(category, clock reading, result) for `count` results, round-robin over `checks` checks."""
    step = interval / checks
    out: list[tuple[str, float, Result]] = []
    for i in range(count):
        rnd, idx = divmod(i, checks)
        cycle, phase = divmod(rnd, 4)
        at = T0 + i * step
        name = f"bench_{idx:05d}"
        victims = _victims(cycle, checks)
        bad = victims.get(idx) if phase in (1, 2) else None
        healing = (phase == 3 and idx in victims) or (phase == 0 and cycle > 0 and idx in _victims(cycle - 1, checks))
        category = "first" if rnd == 0 else "scripted" if bad is not None or healing else "ok"
        status: int | None = 200
        outcome, message = Outcome.OK, "200 in 0.001 s"
        if bad is Outcome.SERVER_ERROR:
            outcome, status, message = Outcome.SERVER_ERROR, 500, "expected 200, got 500 after 0.002 s"
        elif bad is Outcome.TIMEOUT:
            outcome, status, message = Outcome.TIMEOUT, None, "no answer within 1.000 s"
        out.append((category, at, Result(
            check=name, kind="http", outcome=outcome, message=message, duration_s=0.001, started_at=at,
            finished_at=at, status_code=status, confirmation=False,
        )))
    return out


@dataclass
class Run:
    """One timed pass: summed CPU ns and counts per category, and the whole loop's CPU."""

    ns: dict[str, int]
    n: dict[str, int]
    total_ns: int


async def _engine(config: Config, clock: Clock, trace: Callable[[str], None] | None = None) -> AlertEngine:
    engine = AlertEngine(config, rules_by_kind=RULES_BY_KIND, registry=prometheus_client.CollectorRegistry(),
                         clock=clock, store_factory=lambda state_dir: Store.open(state_dir, trace=trace))
    await engine.start()
    return engine


def timed_pass(config: Config, feed: list[tuple[str, float, Result]], *, per_call: bool) -> Run:
    """Feed every result to a fresh engine; per_call: time each observe(), else only the whole loop."""
    clock = Clock()
    loop = asyncio.new_event_loop()
    try:
        engine = loop.run_until_complete(_engine(config, clock))
        observe = engine.observe
        ns = dict.fromkeys(CATEGORIES, 0)
        n = dict.fromkeys(CATEGORIES, 0)
        cpu = time.process_time_ns
        start = cpu()
        if per_call:
            for category, at, result in feed:
                clock.now = at
                t = cpu()
                observe(result)
                ns[category] += cpu() - t
                n[category] += 1
        else:
            for _category, at, result in feed:
                clock.now = at
                observe(result)
        total = cpu() - start
        loop.run_until_complete(engine.aclose(0.0))
    finally:
        loop.close()
    return Run(ns, n, total)


def counted_pass(config: Config, feed: list[tuple[str, float, Result]]) -> dict[str, dict[str, int]]:
    """Untimed: SQLite transactions and statements, and pam_monitor_alerts_firing series set, per category."""
    clock = Clock()
    loop = asyncio.new_event_loop()
    counts = {c: {"results": 0, "tx": 0, "statements": 0, "gauge_sets": 0} for c in CATEGORIES}
    current = ["first"]
    tracing = [False]

    def trace(sql: str) -> None:
        if not tracing[0]:
            return
        counts[current[0]]["statements"] += 1
        if sql.lstrip().upper().startswith("BEGIN"):
            counts[current[0]]["tx"] += 1

    try:
        engine = loop.run_until_complete(_engine(config, clock, trace))
        tracing[0] = True
        for category, at, result in feed:
            clock.now = at
            current[0] = category
            counts[category]["results"] += 1
            before = engine.stats().firing_sets
            engine.observe(result)
            counts[category]["gauge_sets"] += engine.stats().firing_sets - before
        tracing[0] = False
        loop.run_until_complete(engine.aclose(0.0))
    finally:
        loop.close()
    return counts


def quiet_logs() -> dict[str, int]:
    """Render log events to JSON and drop them (the daemon writes them somewhere); count them by event name."""
    seen: dict[str, int] = {}

    def count(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        seen[event["event"]] = seen.get(event["event"], 0) + 1
        return event

    structlog.configure(
        processors=[count, structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.ReturnLoggerFactory(), cache_logger_on_first_use=True,
    )
    return seen


def timer_cost(samples: int = 100_000) -> float:
    """ns of one `process_time_ns()` pair around nothing (what per-call figures include)."""
    cpu = time.process_time_ns
    start = cpu()
    for _ in range(samples):
        t = cpu()
        _ = cpu() - t
    return (cpu() - start) / samples


def main(argv: list[str] | None = None) -> int:
    """Run the passes and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--results", type=int, default=20_000)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between runs of one check")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not (1 <= args.checks <= 100_000 and 1 <= args.results <= 1_000_000 and 1 <= args.repeat <= 20):
        parser.error("checks 1..100000, results 1..1000000, repeat 1..20")
    feed = script(args.checks, args.results, args.interval)
    events = quiet_logs()
    import alerts

    print(f"engine: {alerts.__file__}")
    print(f"{args.checks:,} checks, {args.results:,} results, interval {args.interval:g} s, no sinks, "
          f"medians of {args.repeat}")
    per_call: list[Run] = []
    whole: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="pam-bench-observe-") as tmp:
        for i in range(args.repeat):
            config = build_config(args.checks, args.interval, Path(tmp) / f"w{i}")
            whole.append(timed_pass(config, feed, per_call=False))
            config = build_config(args.checks, args.interval, Path(tmp) / f"p{i}")
            per_call.append(timed_pass(config, feed, per_call=True))
        events.clear()
        counts = counted_pass(build_config(args.checks, args.interval, Path(tmp) / "count"), feed)
    print()
    print("| category | results | CPU us/observe | per run | SQLite tx | SQLite statements | firing-gauge sets |")
    print("|---|---|---|---|---|---|---|")
    for c in CATEGORIES:
        n = per_call[0].n[c]
        if not n:
            continue
        us = [r.ns[c] / r.n[c] / 1000 for r in per_call]
        k = counts[c]
        print(f"| {c} | {n:,} | {statistics.median(us):.1f} | {', '.join(f'{u:.1f}' for u in us)} | "
              f"{k['tx']:,} | {k['statements']:,} | {k['gauge_sets']:,} |")
    us = [r.total_ns / args.results / 1000 for r in whole]
    k = {key: sum(counts[c][key] for c in CATEGORIES) for key in ("tx", "statements", "gauge_sets")}
    print(f"| all (one timer per loop) | {args.results:,} | {statistics.median(us):.1f} | "
          f"{', '.join(f'{u:.1f}' for u in us)} | {k['tx']:,} | {k['statements']:,} | {k['gauge_sets']:,} |")
    print(f"\nlog events in one pass: {', '.join(f'{k} {v}' for k, v in sorted(events.items())) or 'none'}")
    print(f"timer: one process_time_ns() pair costs {timer_cost() / 1000:.2f} us (included in the per-category "
          "rows, not in `all`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
