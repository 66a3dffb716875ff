"""`discover` that cannot get you banned (issue 17): against a backend of 200 secured routes behind a real
IP-blocking middleware (ban after more than 20 distinct routes a minute) and a rate limiter, the discovered config
carries a max_rate and a max_routes_per_minute, its schedule never touches more than 5 routes in any minute,
`check` waits for room in the route window, and a short `run` is neither banned nor rate-limited."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import probes
from monitor.core.config import Config, load_config
from monitor.metrics import Metrics
from monitor.pacing import Pacing
from monitor.runner import Runner
from monitor.schedule import MonotonicScheduler
from monitor.state import State
from probes.deps import build_deps
from tests.support.daemon import command, run_daemon
from tests.support.ip_blocker import BLOCKED, IpBlocker, RateLimiter, secured_backend
from tests.support.servers import free_port, serve_asgi

pytestmark = pytest.mark.process  # runs discover, check and the daemon as processes against the blocker

ROUTES = 200


def discovered(tmp_path: Path, base: str) -> Path:
    """`pam-monitor discover --openapi <base>` written to a file."""
    out = tmp_path / "discovered.yaml"
    done = subprocess.run(command("discover", "--openapi", base, "--output", str(out)), capture_output=True,
                          text=True, timeout=60)
    assert 0 == done.returncode, done.stderr
    return out


def variant(path: Path, tmp_path: Path, *, checks: int, max_rate: str | None = None,
            max_routes: int | None = None) -> Config:
    """The discovered config cut to its first `checks` checks, its target's limits changed as given."""
    raw = yaml.safe_load(path.read_text())
    raw["checks"] = raw["checks"][:checks]
    target = raw["targets"]["backend"]
    if max_rate is not None:
        target["max_rate"] = max_rate
    if max_routes is None:
        target.pop("max_routes_per_minute", None)
    else:
        target["max_routes_per_minute"] = max_routes
    out = tmp_path / f"variant-{checks}-{str(max_rate).replace('/', '-per-')}-{max_routes}.yaml"
    out.write_text(yaml.safe_dump(raw))
    return load_config(out, environ={})


@pytest.fixture
def guarded() -> Any:
    """The 200-route backend behind the rate limiter (60 a minute) and the IP blocker (more than 20 distinct routes
    a minute bans for an hour), served on 127.0.0.1: (blocker, limiter, base URL)."""
    limiter = RateLimiter(secured_backend(ROUTES), limit=60)
    blocker = IpBlocker(limiter, max_routes=20)
    with serve_asgi(blocker) as base:
        yield blocker, limiter, base


def test_discover_writes_a_paced_target_that_validates(guarded: Any, tmp_path: Path) -> None:
    """The discovered config has one check per secured route and a target with max_rate 10/m and
    max_routes_per_minute 5, explained in a comment; it validates as written; discovering touched two routes (the
    base URL, then /openapi.json)."""
    blocker, _, base = guarded
    out = discovered(tmp_path, base)
    text = out.read_text()
    assert "# Paced so that watching cannot get pam-monitor banned or rate-limited" in text
    config = load_config(out, environ={})
    target = config.targets["backend"]
    assert (ROUTES, 10 / 60, 5) == (len(config.checks), target.max_rate, target.max_routes_per_minute)
    assert ([], 2) == (blocker.bans, blocker.routes_seen)


async def test_the_schedule_touches_at_most_five_routes_and_ten_requests_in_any_minute(
        guarded: Any, tmp_path: Path) -> None:
    """The runner's plan for the discovered config (first runs spread over the stretched interval, then every
    interval, on the scheduler's clock): in any 60 s window of the first three hours, at most 5 distinct checks
    run and at most 10 requests are sent (auth_contract: 5 requests a run)."""
    _, _, base = guarded
    config = load_config(discovered(tmp_path, base), environ={})
    deps = build_deps(config)
    scheduler = MonotonicScheduler()
    try:
        runner = Runner(config, deps, Metrics(process_metrics=False), State(deps.clock.monotonic))
        runner.start(scheduler)
        scheduler.start(paused=True)
        start = scheduler.clock.now()
        runs: list[tuple[float, str]] = []
        for name in runner.checks:
            job = scheduler.get_job(name)
            first, every = (job.next_run_time - start).total_seconds(), runner.pacing.interval(name)
            runs += [(first + k * every, name) for k in range(int(3 * 3600 / every) + 1)
                     if first + k * every < 3 * 3600]
    finally:
        scheduler.shutdown(wait=False)
        await deps.aclose()
    runs.sort()
    assert len(runs) > ROUTES  # every check ran at least once in three hours
    busiest_routes = busiest_requests = 0
    for i, (at, _) in enumerate(runs):
        window = [name for t, name in runs[i:] if t < at + 60.0]
        busiest_routes = max(busiest_routes, len(set(window)))
        busiest_requests = max(busiest_requests, sum(runner.pacing.requests(n) for n in window))
    assert busiest_routes <= 5
    assert busiest_requests <= 10


async def _round(config: Config, *, route_window: float | None) -> list[Any]:
    """One `check` round of the config in process, its pacing's route window shortened to `route_window` s."""
    deps = build_deps(config)
    try:
        runner = Runner(config, deps, Metrics(process_metrics=False), State(deps.clock.monotonic))
        if route_window is not None:
            runner.pacing = Pacing(runner.checks.values(), config.targets,
                                   lambda c: probes.REGISTRY[c.kind].requests(c), route_window=route_window)
        return await asyncio.wait_for(runner.run_all(), timeout=60)
    finally:
        await deps.aclose()


async def test_a_check_round_waits_for_room_in_the_route_window(tmp_path: Path) -> None:
    """A blocker banning more than 5 distinct routes in 3 s. Control: twelve checks in one round with no route
    limit get the client banned (the blocker works, and the old `check` would be banned). With
    max_routes_per_minute 5 (its window shortened to 3 s, like the blocker's), the round takes its time and is
    never banned: every check sees the auth layer's 401, none the block page."""
    limiter = RateLimiter(secured_backend(ROUTES), limit=1000)
    blocker = IpBlocker(limiter, max_routes=5, window=3.0, ban=3.0)
    with serve_asgi(secured_backend(ROUTES)) as plain:
        out = discovered(tmp_path, plain)
    with serve_asgi(blocker) as base:
        def pointed(config: Config) -> Config:
            targets = {"backend": config.targets["backend"].model_copy(update={"base_url": base})}
            return config.model_copy(update={"targets": targets})

        unlimited = pointed(variant(out, tmp_path, checks=12, max_rate="6000/m"))
        await _round(unlimited, route_window=None)
        assert blocker.bans, "control: twelve routes at once must be banned"
        await asyncio.sleep(3.1)  # the ban and the window are over
        blocker.bans.clear()
        blocker.routes_seen = 0
        limited = pointed(variant(out, tmp_path, checks=12, max_rate="6000/m", max_routes=5))
        results = await _round(limited, route_window=3.0)
    assert ([], 0) == (blocker.bans, limiter.limited)
    assert blocker.routes_seen <= 5
    assert {("ok", 401)} == {(r.outcome.value, r.status_code) for r in results}
    assert all(BLOCKED["message"] not in r.message for r in results)


@pytest.mark.e2e
def test_a_short_run_of_the_discovered_config_is_never_banned(guarded: Any, tmp_path: Path) -> None:
    """`pam-monitor run` on the discovered config as written until its first run has answered (the first runs are
    spread over the stretched interval: about 19 s in): the blocker bans nobody and the limiter answers no 429;
    /status shows every check at its stretched interval (hours, not 30 s). Before, 200 checks spread over 30 s
    touched more than 20 routes within 3 s and were banned."""
    blocker, limiter, base = guarded
    out = discovered(tmp_path, base)
    with run_daemon(out, free_port(), tmp_path) as daemon:
        checks = daemon.wait_for(lambda: len(found := daemon.status()["checks"]) == ROUTES and found,
                                 timeout=30, what="200 checks in /status")
        assert min(c["interval_s"] for c in checks) > 3600
        ran = daemon.wait_for(lambda: [c for c in daemon.status()["checks"] if c["outcome"] is not None], timeout=60,
                              what="a first run")
    assert [("ok", 401)] == [(c["outcome"], c["status_code"]) for c in ran]
    assert ([], 0) == (blocker.bans, limiter.limited)
