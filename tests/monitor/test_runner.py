"""Tests for monitor.runner: the deadline it passes in and its hard stop, crash containment, series from the kind
records, scheduling spread, confirmation re-runs."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
from typing import Any

import pytest
from structlog.testing import capture_logs

import probes
from monitor.core.config import Config
from monitor.core.results import Outcome, ProbeResult, Result
from monitor.metrics import Metrics
from monitor.runner import Runner, run_deadlines
from monitor.schedule import MonotonicScheduler
from monitor.state import State
from probes.deps import Deps, build_deps
from tests.support.poll import until_async


def _config(n: int = 1, interval: str = "10s", timeout: str = "1s", confirm: str = "2s") -> Config:
    return Config.model_validate({
        "targets": {"t": {"base_url": "http://127.0.0.1:9"}},
        "defaults": {"interval": interval, "timeout": timeout},
        "checks": [{"name": f"c{i}", "kind": "http", "target": "t"} for i in range(n)],
        "alerts": {"confirm_delay": confirm},
    })


def _with_probe(probe: Any) -> dict[str, Any]:
    """A registry whose `http` record runs `probe` instead of the real prober."""
    return {"http": dataclasses.replace(probes.REGISTRY["http"], probe=probe)}


def _runner(config: Config, probe: Any, on_result: Any = None) -> tuple[Runner, Deps]:
    deps = build_deps(config)
    runner = Runner(config, deps, Metrics(process_metrics=False), State(deps.clock.monotonic),
                    on_result=on_result, registry=_with_probe(probe))
    return runner, deps


def test_deadline_is_the_timeout_and_the_hard_stop_slightly_after() -> None:
    """The probe gets the whole timeout; the hard stop follows by a quarter of it, at most 0.25 s."""
    assert (100.2, 100.25) == run_deadlines(0.2, 100.0)
    assert (105.0, 105.25) == run_deadlines(5.0, 100.0)


async def test_the_probe_gets_the_run_deadline_and_reports_its_own_timeout() -> None:
    """The runner passes the probe a deadline `timeout` ahead; a probe that stops at it and reports is recorded
    as it reported (the phase that stalled), not replaced by the runner's blind timeout.

    The probe gives up 0.1 s before its deadline, as a prober noticing it first would: a probe that sleeps to the
    very deadline is noticed late on a busy machine, and the runner then rightly distrusts the verdict."""
    given: list[float] = []

    async def stops_at_deadline(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        loop = asyncio.get_running_loop()
        given.append(deadline - loop.time())
        await asyncio.sleep(max(deadline - loop.time() - 0.1, 0))
        return ProbeResult(Outcome.TIMEOUT, "timed out waiting for the response")

    runner, deps = _runner(_config(timeout="1s"), stops_at_deadline)
    result = await runner.run_once(runner.checks["c0"])
    await deps.aclose()
    assert 1 == len(given)
    # The whole timeout, from admission (a busy machine may take a while between admission and the call).
    assert 0.5 < given[0] <= 1.0
    assert result is not None, "the verdict was distrusted: the probe was noticed more than 50 ms late"
    assert (Outcome.TIMEOUT, "timed out waiting for the response") == (result.outcome, result.message)
    # From admission to the probe's return at 0.1 s before its deadline; the upper bound is generous (busy machine).
    assert 0.9 - 0.05 <= result.duration_s < 1.0 + 2.0


async def test_hard_stop_turns_a_hang_into_timeout() -> None:
    """A probe that ignores its deadline is cut at the hard stop and recorded as `timeout`, not left hanging."""
    async def hang(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    runner, deps = _runner(_config(timeout="200ms"), hang)
    result = await runner.run_once(runner.checks["c0"])
    await deps.aclose()
    assert Outcome.TIMEOUT == result.outcome
    assert "no complete answer within the 0.20 s timeout" == result.message
    # Cut at the hard stop, not after the probe's hour-long sleep: the upper bound is generous (busy machine).
    assert 0.2 + 0.05 <= result.duration_s < 2.0


async def test_result_holds_the_observation_itself() -> None:
    """The result keeps the probe's observation as it came (no field-by-field copy) and reads through to it."""
    observed = ProbeResult(Outcome.OK, "200 after 0.01 s", status_code=200, details={"bytes": 2},
                           phases={"health": 0.01})

    async def ok(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        return observed

    runner, deps = _runner(_config(), ok)
    result = await runner.run_once(runner.checks["c0"])
    await deps.aclose()
    assert observed is result.observed
    assert ("c0", "http", Outcome.OK, "200 after 0.01 s", 200, {"bytes": 2}, {"health": 0.01}, True) == (
        result.check, result.kind, result.outcome, result.message, result.status_code, dict(result.details),
        dict(result.phases), result.success)


async def test_series_are_declared_from_the_kind_records() -> None:
    """Outcomes, tables and phases of each check's series come from its kind's record: a db check declares its
    outcomes (in the opt-in one-hot family the config asks for), its tables and its phases (canary included) at 0
    before any run."""
    config = Config.model_validate({
        "metrics": {"detail": ["outcome_onehot"]},
        "targets": {"db": {"dsn": "postgresql://u@127.0.0.1:9/x"}},
        "defaults": {"interval": "10s", "timeout": "1s"},
        "checks": [{"name": "d", "kind": "db", "target": "db", "canary": True, "required_tables": ["a"],
                    "required_columns": {"b": ["x"]}}],
    })
    deps = build_deps(config)
    metrics = Metrics(process_metrics=False)
    Runner(config, deps, metrics, State(deps.clock.monotonic))
    await deps.aclose()
    text = metrics.render().decode()
    for outcome in probes.REGISTRY["db"].outcomes:
        assert f'pam_monitor_check_outcome{{check="d",kind="db",outcome="{outcome.value}"}} 0' in text
    for table in ("a", "b"):
        assert f'pam_monitor_db_table_present{{check="d",kind="db",table="{table}"}} 0' in text
    for phase in ("connect", "query", "canary"):
        assert f'pam_monitor_db_phase_duration_seconds{{check="d",kind="db",phase="{phase}"}} 0' in text


async def test_crashing_probe_becomes_internal_error_with_traceback_logged() -> None:
    """An exception out of a probe is a bug: the run records internal_error and the log holds the traceback."""
    async def crash(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        raise KeyError("boom")

    runner, deps = _runner(_config(), crash)
    with capture_logs() as logs:
        result = await runner.run_once(runner.checks["c0"])
    await deps.aclose()
    assert Outcome.INTERNAL_ERROR == result.outcome
    crashed = [e for e in logs if e["event"] == "probe.crashed"]
    assert 1 == len(crashed)
    assert "KeyError: 'boom'" in crashed[0]["traceback"]


async def test_result_hook_failure_does_not_stop_probing() -> None:
    """If the alert engine raises on a result, the run still completes and state is updated."""
    async def ok(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        return ProbeResult(Outcome.OK, "fine", status_code=200)

    def broken(result: Result) -> None:
        raise RuntimeError("engine bug")

    runner, deps = _runner(_config(), ok, on_result=broken)
    with capture_logs() as logs:
        result = await runner.run_once(runner.checks["c0"])
    await deps.aclose()
    assert result is runner.state.results["c0"]
    assert ["alerts.observe_failed"] == [e["event"] for e in logs if e["log_level"] == "error"]


async def test_first_runs_are_spread_across_the_interval() -> None:
    """With 10 checks at 10 s, first run times are distinct and evenly spaced inside one interval."""
    async def ok(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        return ProbeResult(Outcome.OK, "fine")

    runner, deps = _runner(_config(n=10), ok)
    scheduler = MonotonicScheduler()
    runner.start(scheduler)
    scheduler.start(paused=True)
    try:
        starts = sorted(j.next_run_time.timestamp() for j in scheduler.get_jobs() if j.id.startswith("c"))
    finally:
        scheduler.shutdown(wait=False)
        await deps.aclose()
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    assert [1.0] * 9 == gaps
    assert starts[-1] - starts[0] < 10


async def test_change_of_outcome_triggers_a_confirmation_run() -> None:
    """After ok -> server_error the next run is pulled in to confirm_delay and is flagged as a confirmation."""
    outcomes = iter([Outcome.OK, Outcome.SERVER_ERROR, Outcome.SERVER_ERROR])
    seen: list[Result] = []

    async def flip(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        return ProbeResult(next(outcomes), "x")

    runner, deps = _runner(_config(interval="30s", confirm="300ms"), flip, on_result=seen.append)
    scheduler = MonotonicScheduler()
    runner.start(scheduler)
    scheduler.start()
    try:
        await runner.run_once(runner.checks["c0"])
        await runner.run_once(runner.checks["c0"])
        job = scheduler.get_job("c0")
        assert job.next_run_time - scheduler.clock.now() < dt.timedelta(seconds=1)
        await until_async(lambda: len(seen) == 3, timeout=5)
    finally:
        scheduler.shutdown(wait=False)
        await deps.aclose()
    assert [(Outcome.OK, False), (Outcome.SERVER_ERROR, False), (Outcome.SERVER_ERROR, True)] == [
        (r.outcome, r.confirmation) for r in seen
    ]


@pytest.mark.parametrize("confirm", ["0s", "40s"])
async def test_no_confirmation_when_disabled_or_not_sooner(confirm: str) -> None:
    """confirm_delay 0 disables confirmation; a delay not shorter than the interval changes nothing."""
    outcomes = iter([Outcome.OK, Outcome.SERVER_ERROR])

    async def flip(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        return ProbeResult(next(outcomes), "x")

    config = _config(interval="50s", confirm=confirm)
    runner, deps = _runner(config, flip)
    scheduler = MonotonicScheduler()
    runner.start(scheduler)
    scheduler.start(paused=True)
    try:
        before = scheduler.get_job("c0").next_run_time
        await runner.run_once(runner.checks["c0"])
        await runner.run_once(runner.checks["c0"])
        assert before == scheduler.get_job("c0").next_run_time
    finally:
        scheduler.shutdown(wait=False)
        await deps.aclose()


async def test_secrets_echoed_by_a_target_are_redacted_from_the_result() -> None:
    """A secret in a probe's message or details (a target echoing a header) is replaced before anyone reads it,
    at any depth of the details (a voice part's summary, a journey step's list)."""
    async def echo(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        return ProbeResult(Outcome.SERVER_ERROR, "expected 200, got 500: Bearer tok-SECRET-123",
                           status_code=500, details={"body_excerpt": "auth=tok-SECRET-123", "bytes": 20,
                                                     "health": {"said": ["x", "tok-SECRET-123"]}})

    from monitor.core.secrets import Redactor

    redactor = Redactor()
    redactor.update(["tok-SECRET-123"])
    config = _config()
    deps = build_deps(config)
    runner = Runner(config, deps, Metrics(process_metrics=False), State(deps.clock.monotonic),
                    registry=_with_probe(echo), redact=redactor.scrub)
    result = await runner.run_once(runner.checks["c0"])
    await deps.aclose()
    assert ("expected 200, got 500: Bearer **********",
            {"body_excerpt": "auth=**********", "bytes": 20, "health": {"said": ["x", "**********"]}}) == (
        result.message, dict(result.details))


async def test_log_levels_follow_what_changed() -> None:
    """First failure and a change for the worse warn; a failure that goes on is info; a recovery is info."""
    outcomes = iter([Outcome.TIMEOUT, Outcome.TIMEOUT, Outcome.SERVER_ERROR, Outcome.OK, Outcome.OK])

    async def seq(check: Any, deps: Deps, deadline: float) -> ProbeResult:
        return ProbeResult(next(outcomes), "x")

    runner, deps = _runner(_config(), seq)
    with capture_logs() as logs:
        for _ in range(5):
            await runner.run_once(runner.checks["c0"])
    await deps.aclose()
    assert [("check.transition", "warning"), ("check.failed", "info"), ("check.transition", "warning"),
            ("check.transition", "info"), ("check.finished", "debug")] == [
        (e["event"], e["log_level"]) for e in logs if e["event"].startswith("check.") and "confirmation" not in e[
            "event"]]
