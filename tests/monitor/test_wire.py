"""A timeout counts only time on the wire: a request that waited inside pam-monitor (for one of the resolver's
threads) until its deadline is the monitor's timeout, skipped as saturated; a request that reached the target and
got no answer is the target's timeout. The transport notes the moment a request reached the network
(`Trace.wire_at`): the lookup starting on a resolver thread, the connect for an IP address, the write on a
reused connection."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from monitor.core.config import Config, RequestSpec
from monitor.core.results import Outcome
from monitor.core.wiretime import Wire, watch_wire
from monitor.metrics import Metrics
from monitor.runner import Runner
from monitor.state import State
from probes._http import Fetched, fetch
from probes.deps import build_deps
from tests.support.poll import until_async
from tests.support.servers import serve_asgi
from tests.support.targets import create_target_app


@pytest.fixture
def target() -> Iterator[str]:
    """The shared stand-in target (its /hang never answers), at an IP address: no lookup before the connect."""
    with serve_asgi(create_target_app()) as url:
        yield url


@pytest.fixture
async def busy_resolver() -> AsyncIterator[threading.Event]:
    """The loop's resolver threads (its default executor, where lookups run) cut to one and held busy until the
    test sets the event (or 10 s pass): a lookup queued behind it waits inside pam-monitor."""
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(executor)
    release = threading.Event()
    started = threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    held = loop.run_in_executor(None, hold)
    await until_async(started.is_set, timeout=5, what="the resolver thread to be taken")
    yield release
    release.set()
    await held
    executor.shutdown(wait=True)


def _runner(url: str) -> Runner:
    """`hold` hangs on the wire (IP address); `queued` names the same target by host name, so its request must
    first be looked up on a resolver thread."""
    by_name = url.replace("127.0.0.1", "localhost")
    config = Config.model_validate({
        "targets": {"t": {"base_url": url}, "named": {"base_url": by_name}},
        "defaults": {"interval": "10s", "timeout": "1s"},
        "checks": [{"name": "hold", "kind": "http", "target": "t", "path": "/hang", "timeout": "1500ms"},
                   {"name": "queued", "kind": "http", "target": "named", "path": "/respond", "timeout": "300ms"}],
    })
    deps = build_deps(config)
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


async def test_a_lookup_stuck_behind_busy_resolver_threads_is_the_monitors_timeout(
        target: str, busy_resolver: threading.Event) -> None:
    """While every resolver thread is busy, a run whose target is named by host name waits for one until its
    deadline: its request never left pam-monitor, so the run is skipped (saturated), no result. A run that hangs
    on the wire meanwhile is a real `timeout`."""
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


async def test_check_mode_reports_a_timeout_before_the_wire_saying_it_was_the_monitor(
        target: str, busy_resolver: threading.Event) -> None:
    """`pam-monitor check` runs it again and finally reports the timeout, saying the request never left."""
    runner = _runner(target)
    (queued,) = await runner.run_all(["queued"])
    await runner.deps.aclose()
    assert Outcome.TIMEOUT == queued.outcome
    assert queued.message.endswith("(pam-monitor itself was too busy to be sure: a request timed out before it "
                                   "ever left pam-monitor)")


async def test_fetch_outside_a_run_notes_nothing(target: str) -> None:
    """A probe called directly (no runner, no watch_wire) works as before; inside watch_wire an answered
    request, looked up by host name, loses nothing."""
    runner = _runner(target)
    with watch_wire() as wire:
        result = await runner.run_once(runner.checks["queued"])
    await runner.deps.aclose()
    assert result is not None
    assert Outcome.OK == result.outcome
    assert 0.0 == wire.lost


@pytest.mark.parametrize(("keep_alive", "host"), [(False, "127.0.0.1"), (False, "localhost"), (True, "127.0.0.1")])
async def test_the_wire_moment_is_noted_before_the_connection_is_ready(target: str, keep_alive: bool,
                                                                       host: str) -> None:
    """Every request notes when it reached the network, after the fetch began and, on a new connection, before
    the connection was ready (the lookup or the connect); on a reused connection, once it is ready (the write)."""
    config = Config.model_validate({"http": {"keep_alive": keep_alive},
                                    "targets": {"t": {"base_url": target.replace("127.0.0.1", host)}}})
    deps = build_deps(config)
    spec = RequestSpec(path="/respond")
    deadline = asyncio.get_running_loop().time() + 5
    traces = []
    for _ in range(2):
        began = time.perf_counter()
        fetched = await fetch(deps, "t", spec, deadline=deadline)
        assert isinstance(fetched, Fetched)
        assert fetched.trace is not None
        traces.append((began, fetched.trace))
    await deps.aclose()
    for began, trace in traces:
        assert began <= trace.wire_at
    (_, first), (_, second) = traces
    assert first.wire_at <= first._ready_at
    assert (keep_alive, keep_alive) == (second.reused, second.wire_at >= second._ready_at)
