"""Verdicts as state sequences, rules and pure machine chained the way the engine chains them: 429s are
inconclusive, a long rate-limited spell is CheckFailed, a regression needs a good answer first and keeps its
`from` across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prometheus_client

from alerts.evaluate import evaluate, remember
from alerts.machine import AlertState, Policy, Status, step
from alerts.model import CheckMemory
from alerts.rules import rules_for
from monitor.core.config import Config
from probes import RULES_BY_KIND
from tests.support.alerting import make_config, make_engine, result, target_alerts
from tests.support.clock import T0, FakeClock

CONFIG = make_config()


class Sequence:
    """One check's results through `evaluate()` and `step()`, with its memory, as the engine does (no store)."""

    def __init__(self, check: str, config: Config = CONFIG) -> None:
        self.config = config
        self.check = next(c for c in config.checks if c.name == check)
        self.rules = rules_for(config, self.check, RULES_BY_KIND)
        self.states: dict[str, AlertState] = {}
        self.memory = CheckMemory()
        self.events: list[tuple[float, str, str]] = []

    def feed(self, outcome: str, *, at: float, status: int | None = None, **extra: Any) -> list[tuple[str, str]]:
        """One result; returns the (event, alertname) notifications it caused."""
        r = result(self.check.name, outcome, status=status, at=at, **extra)
        out = []
        for obs in evaluate(self.config, self.check, r, self.memory, [k for k, s in self.states.items() if s.active],
                            rules=self.rules, kind_rules=RULES_BY_KIND[self.check.kind]):
            state = self.states.get(obs.key) or AlertState(obs.key, obs.alertname, obs.check)
            self.states[obs.key], actions = step(state, obs, at, Policy())
            out += [(a.event.value, a.state.alertname) for a in actions]
        self.memory = remember(self.memory, r)
        self.events += [(at, event, name) for event, name in out]
        return out

    def status(self, alertname: str) -> Status:
        """Where the check's alert of this name is (inactive if it never had a state)."""
        state = self.states.get(f"{alertname}/{self.check.name}")
        return state.status if state is not None else Status.INACTIVE


def test_429_inside_a_firing_alert_changes_nothing() -> None:
    """AuthBypass fires; then 429s for nine minutes: it stays firing with its streaks as they were, nothing is
    notified; the next good answers resolve it as if the 429s had not been there."""
    s = Sequence("settings_get_unauth")
    s.feed("ok", at=T0, status=403)
    s.feed("auth_bypass", at=T0 + 30, status=200)
    assert [("firing", "AuthBypass")] == s.feed("auth_bypass", at=T0 + 32, status=200)
    before = dict(s.states)
    for minute in range(1, 10):
        assert [] == s.feed("rate_limited", at=T0 + 32 + 60 * minute, status=429)
    assert before == s.states
    assert [] == s.feed("ok", at=T0 + 600, status=403)
    assert [("resolved", "AuthBypass")] == s.feed("ok", at=T0 + 630, status=403)


def test_429_does_not_break_a_bad_streak() -> None:
    """bad, 429, bad: the two bad results are consecutive for the machine, so the alert fires."""
    s = Sequence("backend_health")
    s.feed("ok", at=T0, status=200)
    s.feed("unexpected_status", at=T0 + 30, status=404)
    assert [] == s.feed("rate_limited", at=T0 + 60, status=429)
    assert [("firing", "CheckFailed")] == s.feed("unexpected_status", at=T0 + 90, status=404)


def test_rate_limited_for_ten_minutes_is_check_failed_until_a_conclusive_answer() -> None:
    """429 every minute: nothing until the spell is ten minutes long, then CheckFailed ("cannot see this
    endpoint") fires at once (the spell is its own confirmation); good answers resolve it and end the spell."""
    s = Sequence("settings_get_unauth")
    s.feed("ok", at=T0, status=403)
    for minute in range(1, 11):
        assert [] == s.feed("rate_limited", at=T0 + 60 * minute, status=429, message="429 Too Many Requests")
    assert T0 + 60 == s.memory.rate_limited_since
    assert [("firing", "CheckFailed")] == s.feed("rate_limited", at=T0 + 660, status=429,
                                                 message="429 Too Many Requests")
    summary = s.states["CheckFailed/settings_get_unauth"].annotations["summary"]
    assert "pam-monitor cannot see this endpoint: rate-limited for 10 min (429 Too Many Requests)" == summary
    assert [] == s.feed("ok", at=T0 + 720, status=403)
    assert None is s.memory.rate_limited_since
    assert [("resolved", "CheckFailed")] == s.feed("ok", at=T0 + 750, status=403)


def test_rate_limited_after_is_configurable() -> None:
    """alerts.rate_limited_after: 2m raises CheckFailed two minutes into the spell."""
    s = Sequence("settings_get_unauth", make_config(alerts={"rate_limited_after": "2m"}))
    for second in (0, 60):
        assert [] == s.feed("rate_limited", at=T0 + second, status=429)
    assert [("firing", "CheckFailed")] == s.feed("rate_limited", at=T0 + 120, status=429)


def test_never_good_readiness_endpoint_503_forever_is_endpoint_down_only() -> None:
    """An http readiness endpoint that has answered 503 since the monitor started: EndpointDown fires once and
    stays; no ContractRegression with an invented `from`; CheckFailed stays quiet (EndpointDown covers it)."""
    s = Sequence("backend_health")
    for i in range(20):
        s.feed("server_error", at=T0 + 30 * i, status=503)
    assert [(T0 + 30, "firing", "EndpointDown")] == s.events
    assert {"EndpointDown/backend_health"} == {k for k, st in s.states.items() if st.active}


def test_good_then_500_is_contract_regression_from_the_last_good_status() -> None:
    """200, then 500 twice: ContractRegression fires with from=200 to=500 (with EndpointDown on an http check)."""
    s = Sequence("backend_health")
    s.feed("ok", at=T0, status=200)
    s.feed("server_error", at=T0 + 30, status=500)
    assert {("firing", "ContractRegression"), ("firing", "EndpointDown")} == set(
        s.feed("server_error", at=T0 + 32, status=500))
    labels = s.states["ContractRegression/backend_health"].labels
    assert ("200", "500") == (labels["from"], labels["to"])


def test_check_failed_gives_way_to_a_more_specific_alert() -> None:
    """An http check failing its JSON expectation raises CheckFailed; when it then goes down, EndpointDown covers
    the failure and CheckFailed resolves."""
    s = Sequence("backend_health")
    s.feed("invalid_response", at=T0, status=200)
    assert [("firing", "CheckFailed")] == s.feed("invalid_response", at=T0 + 2, status=200)
    s.feed("connection_error", at=T0 + 30)
    assert {("firing", "EndpointDown"), ("resolved", "CheckFailed")} == set(s.feed("connection_error", at=T0 + 32))


async def test_restart_between_good_and_bad_keeps_from(tmp_path: Path) -> None:
    """The 403 is seen, the daemon restarts, then 500s: ContractRegression fires with from=403 (the memory is
    persisted), not a made-up one and not a CheckFailed."""
    config = make_config(tmp_path)
    clock = FakeClock()
    async with make_engine(config, prometheus_client.CollectorRegistry(), clock) as e:
        e.observe(result("settings_get_unauth", "ok", status=403, at=clock.now))
    async with make_engine(config, prometheus_client.CollectorRegistry(), clock) as e:
        for _ in range(2):
            clock.advance(2.0)
            e.observe(result("settings_get_unauth", "server_error", status=500, at=clock.now))
        assert [("ContractRegression", "403", "500")] == [
            (a["alertname"], a["labels"]["from"], a["labels"]["to"]) for a in target_alerts(e)]


async def test_a_rate_limited_spell_survives_a_restart(tmp_path: Path) -> None:
    """The spell's start is persisted: 429 at T0, a restart, 429s at T0+10 min: CheckFailed fires as if the
    daemon had never stopped."""
    config = make_config(tmp_path)
    clock = FakeClock()
    async with make_engine(config, prometheus_client.CollectorRegistry(), clock) as e:
        e.observe(result("settings_get_unauth", "rate_limited", status=429, at=clock.now))
    clock.advance(600.0)
    async with make_engine(config, prometheus_client.CollectorRegistry(), clock) as e:
        e.observe(result("settings_get_unauth", "rate_limited", status=429, at=clock.now))
        assert [("CheckFailed", "firing")] == [(a["alertname"], a["state"]) for a in target_alerts(e)]

