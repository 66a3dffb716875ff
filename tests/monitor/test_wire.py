"""A timeout counts only time on the wire: a request that waited inside pam-monitor (the HTTP client's connection
pool) until its deadline is the monitor's timeout, skipped as saturated; a request that reached the target and got
no answer is the target's timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from monitor.core.config import Config, Target
from monitor.core.results import Outcome
from monitor.metrics import Metrics
from monitor.runner import Runner
from monitor.state import State
from probes.deps import Deps, Wire, build_deps, watch_wire
from tests.support.servers import serve_asgi
from tests.support.targets import create_target_app


class OneConnection(Deps):
    """Deps whose HTTP client holds a single connection, so a second request queues inside the client."""

    def client_for(self, target: Target) -> httpx.AsyncClient:
        """One shared client limited to one connection."""
        client = self._clients.get((True, None))
        if client is None:
            client = self._clients[(True, None)] = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1), trust_env=False)
        return client


@pytest.fixture
def target() -> Iterator[str]:
    """The shared stand-in target (its /hang never answers)."""
    with serve_asgi(create_target_app()) as url:
        yield url


def _runner(url: str) -> Runner:
    config = Config.model_validate({
        "targets": {"t": {"base_url": url}},
        "defaults": {"interval": "10s", "timeout": "1s"},
        "checks": [{"name": "hold", "kind": "http", "target": "t", "path": "/hang", "timeout": "1500ms"},
                   {"name": "queued", "kind": "http", "target": "t", "path": "/respond", "timeout": "300ms"}],
    })
    built = build_deps(config)
    deps = OneConnection(targets=built.targets, body_limit=built.body_limit, user_agent="t", max_in_flight=4)
    return Runner(config, deps, Metrics(process_metrics=False), State(deps.clock.monotonic))


def test_wire_share_is_the_part_of_the_budget_spent_before_the_wire() -> None:
    """Reaching the wire 0.2 s into a 1 s budget loses 20 %; never reaching it loses all; the worst one counts."""
    wire = Wire()
    wire.timed_out(10.0, 10.2, 11.0)
    assert 0.2 == pytest.approx(wire.lost)
    wire.timed_out(10.0, 10.01, 11.0)
    assert 0.2 == pytest.approx(wire.lost)
    wire.timed_out(10.0, None, 11.0)
    assert 1.0 == wire.lost


async def test_a_request_stuck_in_the_client_pool_is_the_monitors_timeout(target: str) -> None:
    """While a hanging request holds the client's only connection, a second run's request waits in the pool until
    its deadline: skipped (saturated), no result. The hanging run itself, on the wire, is a real `timeout`."""
    runner = _runner(target)
    hold = asyncio.create_task(runner.run_once(runner.checks["hold"]))
    await asyncio.sleep(0.2)
    queued = await runner.run_once(runner.checks["queued"])
    held = await hold
    await runner.deps.aclose()
    assert queued is None
    assert 1 == runner.saturation.total
    assert held is not None
    assert Outcome.TIMEOUT == held.outcome


async def test_check_mode_reports_a_pool_timeout_saying_it_was_the_monitor(target: str) -> None:
    """`pam-monitor check` runs it again and finally reports the timeout, saying the request never left."""
    runner = _runner(target)
    hold = asyncio.create_task(runner.run_once(runner.checks["hold"]))
    await asyncio.sleep(0.2)
    (queued,) = await runner.run_all(["queued"])
    await hold
    await runner.deps.aclose()
    assert Outcome.TIMEOUT == queued.outcome
    assert queued.message.endswith("(pam-monitor itself was too busy to be sure: a request timed out before it "
                                   "ever left pam-monitor)")


async def test_fetch_outside_a_run_notes_nothing(target: str) -> None:
    """A probe called directly (no runner, no watch_wire) works as before; inside watch_wire an answered
    request loses nothing."""
    runner = _runner(target)
    with watch_wire() as wire:
        result = await runner.run_once(runner.checks["queued"])
    await runner.deps.aclose()
    assert result is not None
    assert Outcome.OK == result.outcome
    assert 0.0 == wire.lost
