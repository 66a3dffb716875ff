"""Tests for monitor/pacing.py: max_rate is kept by stretching intervals, extra runs spend from token buckets."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

import probes
from monitor.core.config import Config
from monitor.metrics import Metrics
from monitor.pacing import Pacing, TokenBucket, reserve_of
from monitor.runner import Runner
from monitor.state import State
from probes.deps import build_deps


def _generated(checks: int, *, max_rate: str | None, interval: str = "30s") -> Config:
    """Like `discover` output: many auth_contract checks (1 + 4 forged tokens = 5 requests a run) on one target."""
    target: dict[str, object] = {"base_url": "http://127.0.0.1:9"}
    if max_rate is not None:
        target["max_rate"] = max_rate
    return Config.model_validate({
        "targets": {"backend": target, "other": {"base_url": "http://127.0.0.1:10", "max_rate": "600/m"}},
        "defaults": {"interval": interval, "timeout": "5s"},
        "checks": [{"name": f"op{i:03d}", "kind": "auth_contract", "target": "backend", "path": f"/api/{i}"}
                   for i in range(checks)]
        + [{"name": "health", "kind": "http", "target": "other", "path": "/health"}],
    })


def _pacing(config: Config, now: list[float]) -> Pacing:
    return Pacing(config.checks, config.targets,
                  lambda c: probes.REGISTRY[c.kind].requests(c), monotonic=lambda: now[0])


def test_requests_per_run_come_from_the_kind_records() -> None:
    """http 1; auth_contract 1 + one per forged token; voice 1 or 2 with synthesis; postgrest one per table."""
    config = Config.model_validate({
        "targets": {"t": {"base_url": "http://127.0.0.1:9"}},
        "checks": [
            {"name": "h", "kind": "http", "target": "t"},
            {"name": "a", "kind": "auth_contract", "target": "t", "forged": ["garbage", "expired", "garbage"]},
            {"name": "v", "kind": "voice", "target": "t", "synthesize": {"path": "/tts"}},
            {"name": "p", "kind": "postgrest", "target": "t", "required_tables": ["a", "b", "c"]},
        ],
    })
    assert [1, 3, 2, 3] == [probes.REGISTRY[c.kind].requests(c) for c in config.checks]


def test_a_target_over_its_max_rate_has_every_interval_stretched_by_one_factor() -> None:
    """193 checks x 5 requests every 30 s is 1,930 requests a minute; with max_rate 50/m and 80 % kept for
    scheduled runs (20 % is the confirmations' reserve), every interval on that target is stretched x48.3; the
    other target is untouched."""
    config = _generated(193, max_rate="50/m")
    pacing = _pacing(config, [0.0])
    stretch = 1930 / 40
    assert 30 * stretch == pytest.approx(pacing.interval("op000"))
    assert 30 * stretch == pytest.approx(pacing.interval("op192"))
    assert 30.0 == pacing.interval("health")
    assert 1 == len(pacing.paced)
    assert ("target backend: 193 checks would send 1,930 req/min; max_rate 50/m (80% kept for scheduled runs): "
            "intervals stretched x48.3") == pacing.paced[0].summary()
    scheduled_per_min = sum(5 * 60 / pacing.interval(f"op{i:03d}") for i in range(193))
    assert scheduled_per_min == pytest.approx(40.0)


def test_a_target_within_its_max_rate_is_not_stretched() -> None:
    """Ten checks sending 100 requests a minute stay at their interval under max_rate 200/m."""
    pacing = _pacing(_generated(10, max_rate="200/m"), [0.0])
    assert [] == pacing.paced
    assert 30.0 == pacing.interval("op000")


async def test_the_runner_logs_pacing_once_and_status_shows_the_effective_interval() -> None:
    """The runner logs `target.paced` once per load with the summary, and /status interval_s is the stretched
    interval people will actually see between runs."""
    config = _generated(193, max_rate="50/m")
    deps = build_deps(config)
    state = State(deps.clock.monotonic)
    with capture_logs() as logs:
        Runner(config, deps, Metrics(process_metrics=False), state)
    await deps.aclose()
    paced = [e for e in logs if e["event"] == "target.paced"]
    assert 1 == len(paced)
    assert ("backend", 193, 1930.0, 50.0) == (
        paced[0]["target"], paced[0]["checks"], paced[0]["requests_per_min"], paced[0]["max_rate_per_min"])
    intervals = {c["name"]: c["interval_s"] for c in state.status()["checks"]}
    assert 30 * 1930 / 40 == pytest.approx(intervals["op000"])
    assert 30.0 == intervals["health"]


def test_extra_runs_have_a_daemon_wide_budget() -> None:
    """Ten checks at 10 s run once a second; extra runs get max(1/s, 10 % of that) with a burst of 10: the
    eleventh in a row is refused, and one more is allowed a second later."""
    config = Config.model_validate({
        "targets": {"t": {"base_url": "http://127.0.0.1:9"}},
        "defaults": {"interval": "10s", "timeout": "1s"},
        "checks": [{"name": f"c{i}", "kind": "http", "target": "t"} for i in range(10)],
    })
    now = [0.0]
    pacing = _pacing(config, now)
    assert [True] * 10 + [False] == [pacing.allow_extra("c0") for _ in range(11)]
    now[0] += 1.0
    assert [True, False] == [pacing.allow_extra("c0"), pacing.allow_extra("c0")]


def test_confirmations_have_a_reserved_share_that_scheduled_runs_never_spend() -> None:
    """max_rate 50/m keeps 10/m for extra runs, in a bucket of a minute of it (10 requests: two runs of 5).
    Scheduled runs far over their own share (charged into debt) leave it whole: two extra runs are allowed, the
    third is refused until the reserve has refilled one run's requests (5 at 10/m: 30 s), whatever the scheduled
    runs do meanwhile. (Before: one bucket, which the scheduled runs emptied, so a confirmation waited for the
    next paced run.)"""
    now = [0.0]
    pacing = _pacing(_generated(193, max_rate="50/m"), now)
    for _ in range(50):
        pacing.charge("op000")
    assert [True, True, False] == [pacing.allow_extra(f"op00{i}") for i in (1, 2, 3)]
    now[0] += 25.0
    pacing.charge("op000")
    assert False is pacing.allow_extra("op003")
    now[0] += 6.0
    assert True is pacing.allow_extra("op003")


def test_the_reserve_is_a_fifth_of_max_rate_at_least_one_request_a_minute() -> None:
    """20 % of max_rate; at least 1 request a minute; never more than half of a tiny max_rate."""
    assert 10 / 60 == pytest.approx(reserve_of(50 / 60))
    assert 1 / 60 == pytest.approx(reserve_of(3 / 60))
    assert 0.5 / 60 == pytest.approx(reserve_of(1 / 60))


def test_token_bucket_refills_caps_and_goes_into_bounded_debt() -> None:
    """A bucket refills at its rate up to its capacity; charging past zero is debt, bounded at -capacity."""
    bucket = TokenBucket(rate=2.0, capacity=4.0, now=0.0)
    assert True is bucket.try_take(4, 0.0)
    assert False is bucket.try_take(1, 0.0)
    assert 1.0 == bucket.wait_s(2, 0.0)
    bucket.charge(100, 0.0)
    assert -4.0 == bucket.tokens(0.0)
    assert 4.0 == bucket.tokens(100.0)


def test_max_routes_per_minute_stretches_intervals_and_keeps_every_minute_within_it() -> None:
    """60 http checks at 30 s on a target with max_routes_per_minute 5 (no max_rate): scheduled runs may touch
    80 % of it, 4 routes a minute, so every interval is stretched x30 (to 15 min); the window admits 5 distinct
    routes, then the sixth waits until the first has been out of it for a minute; a check already in the window
    (its confirmation) adds nothing."""
    config = Config.model_validate({
        "targets": {"t": {"base_url": "http://127.0.0.1:9", "max_routes_per_minute": 5}},
        "defaults": {"interval": "30s", "timeout": "1s"},
        "checks": [{"name": f"c{i:02d}", "kind": "http", "target": "t", "path": f"/r/{i}"} for i in range(60)],
    })
    now = [0.0]
    pacing = _pacing(config, now)
    assert 900.0 == pytest.approx(pacing.interval("c00"))
    assert ("target t: 60 checks would touch more than 5 distinct routes a minute (max_routes_per_minute 5): "
            "intervals stretched x30.0") == pacing.paced[0].summary()
    for i in range(5):
        assert 0.0 == pacing.route_wait_s(f"c{i:02d}")
        now[0] += 1.0
        pacing.touch(f"c{i:02d}")
    assert 0.0 == pacing.route_wait_s("c00")
    assert 56.0 == pytest.approx(pacing.route_wait_s("c05"))
    now[0] += 56.0
    assert 0.0 == pacing.route_wait_s("c05")


def test_routes_are_counted_from_the_check_config() -> None:
    """An http or auth_contract check touches one route; a journey one per distinct step request; a postgrest
    check one per table; a tenant_isolation check two (the identity's own read first); never more than its
    requests."""
    config = Config.model_validate({
        "targets": {"t": {"base_url": "http://127.0.0.1:9"}},
        "identities": {"u": {"mint": {"secret": "s" * 32, "sub": "u1"}}},
        "checks": [
            {"name": "h", "kind": "http", "target": "t", "path": "/h"},
            {"name": "a", "kind": "auth_contract", "target": "t", "path": "/a"},
            {"name": "j", "kind": "journey", "target": "t", "identity": "u",
             "steps": [{"name": "r", "path": "/s"}, {"name": "w", "method": "PUT", "path": "/s"},
                       {"name": "r2", "path": "/s"}]},
            {"name": "p", "kind": "postgrest", "target": "t", "required_tables": ["x", "y", "z"]},
            {"name": "i", "kind": "tenant_isolation", "target": "t", "identity": "u", "path": "/u/{id}",
             "params": {"id": "u2"}},
        ],
    })
    pacing = _pacing(config, [0.0])
    isolation = min(2, probes.REGISTRY["tenant_isolation"].requests(config.checks[-1]))  # 2 once it reads its own
    assert {"h": 1, "a": 1, "j": 2, "p": 3, "i": isolation} == {c.name: pacing.routes(c.name) for c in config.checks}
