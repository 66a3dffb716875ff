"""Verdicts as state sequences, rules and pure machine chained the way the engine chains them: 429s are
inconclusive, a long rate-limited spell is CheckFailed, a regression needs a good answer first and keeps its
`from` across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import prometheus_client

from alerts import AlertEngine
from alerts.judge.evaluate import evaluate, remember
from alerts.judge.rules import rules_for
from alerts.lifecycle.machine import AlertState, Policy, Status, step
from alerts.model import CheckMemory
from monitor.core.clock import iso
from monitor.core.config import Config
from probes import RULES_BY_KIND
from tests.alerts.test_dependencies import ROOT, config_for, delivered
from tests.support.alerting import Recorder, make_config, make_engine, result, target_alerts
from tests.support.clock import T0, FakeClock

DEP = "settings_get_unauth"

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
    endpoint", after the method and path) fires at once (the spell is its own confirmation); good answers
    resolve it and end the spell."""
    s = Sequence("settings_get_unauth")
    s.feed("ok", at=T0, status=403)
    for minute in range(1, 11):
        assert [] == s.feed("rate_limited", at=T0 + 60 * minute, status=429, message="429 Too Many Requests")
    assert T0 + 60 == s.memory.rate_limited_since
    assert [("firing", "CheckFailed")] == s.feed("rate_limited", at=T0 + 660, status=429,
                                                 message="429 Too Many Requests")
    summary = s.states["CheckFailed/settings_get_unauth"].annotations["summary"]
    assert ("GET /api/v1/users/{user_id}/settings: pam-monitor cannot see this endpoint: rate-limited for 10 min "
            "(429 Too Many Requests)") == summary
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



# ------------------------------------------------------------------ one outage, one post (issue 17, rows 4 and 5)
# These run through the engine with the webhook + Alertmanager recorder of test_dependencies: backend_health is
# the backend target's health_check, every other backend check depends on it.

def _webhook(rec: Recorder) -> list[tuple[str, str, str, str]]:
    """What the webhook was told: (event, alertname, check, startsAt) per request."""
    return [(b["event"], b["alerts"][0]["labels"]["alertname"], b["alerts"][0]["labels"]["check"],
             b["alerts"][0]["startsAt"]) for b in rec.bodies("/hook")]


def _unique(engine: AlertEngine) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """/status's alerts as (alertname, sorted labels): the same alert listed twice shows up as a repeat."""
    return [(a["alertname"], tuple(sorted(a["labels"].items()))) for a in target_alerts(engine)]


async def test_row4_a_rate_limited_check_failed_held_by_an_outage_is_sent_once_the_root_recovers(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """The dependent is rate-limited (inconclusive) for longer than rate_limited_after while its root is down: its
    CheckFailed fires held. The root recovers and the dependent stays rate-limited: the hold ends all the same, the
    first rate-limited result begun after the recovery sends it (it still fails: pam-monitor cannot see the
    endpoint), and /status lists it once, not held. (Before: held for ever, "until this check's next result".)"""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url, rate_limited_after="2m"), registry, clock) as e:
        def run(check: str, outcome: str, **extra: Any) -> None:
            clock.advance(1.0)
            e.observe(result(check, outcome, at=clock.now, **extra))

        run(ROOT, "ok", status=200)
        run(DEP, "ok", status=403)
        run(DEP, "rate_limited", status=429)
        run(ROOT, "connection_error")
        run(ROOT, "connection_error")
        clock.advance(120.0)
        run(DEP, "rate_limited", status=429)  # two minutes of 429s: CheckFailed fires, held (the root is down)
        assert {("CheckFailed", DEP), ("EndpointDown", ROOT)} == {(a["alertname"], a["labels"]["check"])
                                                                  for a in target_alerts(e)}
        run(ROOT, "ok", status=200)
        run(ROOT, "ok", status=200)
        run(DEP, "rate_limited", status=429)  # begun after the recovery, still blind: its own problem
        await delivered(registry)
        assert [("firing", "EndpointDown", ROOT), ("resolved", "EndpointDown", ROOT), ("firing", "CheckFailed", DEP)] \
            == [w[:3] for w in _webhook(rec)]
        alerts = target_alerts(e)
        assert [("CheckFailed", None)] == [(a["alertname"], a["held_reason"]) for a in alerts]
        assert len(set(_unique(e))) == len(_unique(e))


async def test_row4_a_rate_limited_check_failed_with_a_healthy_root_is_sent_at_once(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """No outage at all: a dependent rate-limited past rate_limited_after while its root passes is sent at once
    (its latest conclusive result passed long ago; the old verdict held it until a failing result that never
    came)."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url, rate_limited_after="2m"), registry, clock) as e:
        e.observe(result(ROOT, "ok", status=200, at=clock.now))
        e.observe(result(DEP, "ok", status=403, at=clock.now))
        for _ in range(3):
            clock.advance(61.0)
            e.observe(result(ROOT, "ok", status=200, at=clock.now))
            e.observe(result(DEP, "rate_limited", status=429, at=clock.now))
        await delivered(registry)
        assert [("firing", "CheckFailed", DEP)] == [w[:3] for w in _webhook(rec)]
        assert [None] == [a["held_reason"] for a in target_alerts(e)]


async def test_row4_a_journey_rate_limited_at_a_failing_step_is_one_alert(tmp_path: Path) -> None:
    """A journey whose `write` step raised CheckFailed is then rate-limited at that step past rate_limited_after:
    one CheckFailed for that step (now saying it cannot see the endpoint), not a second one for the journey."""
    clock = FakeClock()
    config = make_config(tmp_path, alerts={"rate_limited_after": "2m", "watchdog": False})
    steps = [{"name": "read", "outcome": "ok", "status": 200}]
    async with make_engine(config, prometheus_client.CollectorRegistry(), clock) as e:
        for _ in range(2):
            clock.advance(1.0)
            e.observe(result("settings_journey", "invalid_response", status=200, at=clock.now, details={
                "step": "write", "steps": [*steps, {"name": "write", "outcome": "invalid_response", "status": 200}]}))
        for _ in range(3):
            clock.advance(61.0)
            e.observe(result("settings_journey", "rate_limited", status=429, at=clock.now, details={
                "step": "write", "steps": [*steps, {"name": "write", "outcome": "rate_limited", "status": 429}]}))
        alerts = target_alerts(e)
        assert [("CheckFailed", "write")] == [(a["alertname"], a["labels"].get("step")) for a in alerts]
        assert len(set(_unique(e))) == len(_unique(e))


async def test_row5_an_outage_neither_resolves_nor_refires_what_was_firing_before(
        recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    """A CheckFailed on a dependent was firing (and sent) before the backend died. The dependent sees the outage
    first (twice, before the root has run again), then the root does: the webhook gets the root's firing, whose
    also_failing lists only what began in the outage (not the old CheckFailed); the old CheckFailed is neither
    resolved nor re-fired, and keeps its startsAt through the recovery. A second dependent that failed in the
    outage and runs again only 40 s after the recovery is never sent (no stale page): its first fresh result
    passes, so its held alert is dropped. One outage: one firing and one resolution for the root, nothing else."""
    rec, url = recorder
    registry, clock = prometheus_client.CollectorRegistry(), FakeClock()
    async with make_engine(config_for(tmp_path, url), registry, clock) as e:
        def run(check: str, outcome: str, **extra: Any) -> None:
            clock.advance(1.0)
            e.observe(result(check, outcome, at=clock.now, **extra))

        run(ROOT, "ok", status=200)
        run("voice_health", "ok", status=200)
        run(DEP, "invalid_response", status=403, message="settings: refusal body is not the declared shape")
        run(DEP, "invalid_response", status=403, message="settings: refusal body is not the declared shape")
        run(ROOT, "ok", status=200)  # the root is fine: the dependent's CheckFailed is its own, sent
        await delivered(registry)
        assert [("firing", "CheckFailed", DEP)] == [w[:3] for w in _webhook(rec)]
        before = _webhook(rec)[0][3]
        clock.advance(20.0)
        run(ROOT, "ok", status=200)  # the root's last good run before the outage
        # The backend dies. The dependent sees it first, twice, before the root has run again.
        run(DEP, "connection_error", message="connection refused")
        run(DEP, "connection_error", message="connection refused")
        run(ROOT, "connection_error", message="connection refused")
        run(ROOT, "connection_error", message="connection refused")
        run("voice_health", "connection_error", message="connection refused")
        run("voice_health", "connection_error", message="connection refused")
        run(DEP, "connection_error", message="connection refused")
        await delivered(registry)
        hook = rec.bodies("/hook")
        assert [("firing", "CheckFailed", DEP), ("firing", "EndpointDown", ROOT)] == [w[:3] for w in _webhook(rec)]
        # Listed when the root fired: the dependent's EndpointDown (begun in the outage), not its older CheckFailed.
        assert "also failing on target backend: settings_get_unauth (EndpointDown)" == hook[1]["alerts"][0][
            "annotations"]["also_failing"]
        # The backend is back: the root recovers; the dependent still has its own old problem.
        run(ROOT, "ok", status=200)
        run(ROOT, "ok", status=200)
        run(DEP, "invalid_response", status=403, message="settings: refusal body is not the declared shape")
        run(DEP, "invalid_response", status=403, message="settings: refusal body is not the declared shape")
        clock.advance(40.0)
        assert 0 == e.release_due()
        run("voice_health", "ok", status=200)
        run("voice_health", "ok", status=200)
        await delivered(registry)
        assert [("firing", "CheckFailed", DEP, before), ("firing", "EndpointDown", ROOT, _webhook(rec)[1][3]),
                ("resolved", "EndpointDown", ROOT, _webhook(rec)[1][3])] == _webhook(rec)
        assert [("CheckFailed", DEP, iso(T0 + 3))] == [(a["alertname"], a["labels"]["check"], a["since"])
                                                       for a in target_alerts(e)]
        assert before == iso(T0 + 3)


def test_summaries_name_method_path_and_step() -> None:
    """Issue 17: an alert's summary names what was asked: the check's method and configured path (never the values
    filled in), a journey's step and that step's own request; a sentence that already names a request is not
    named twice."""
    s = Sequence("settings_get_unauth")
    s.feed("ok", at=T0, status=403)
    s.feed("server_error", at=T0 + 1, status=500, message="expected 401|403, got 500")
    s.feed("server_error", at=T0 + 2, status=500, message="expected 401|403, got 500")
    assert "GET /api/v1/users/{user_id}/settings: expected 401|403, got 500" == s.states[
        "ContractRegression/settings_get_unauth"].annotations["summary"]
    j = Sequence("settings_journey")
    for at in (T0, T0 + 1):
        j.feed("invalid_response", at=at, status=200, message="the body read back is not what was written",
               details={"step": "write", "steps": [{"name": "read", "outcome": "ok", "status": 200},
                                                   {"name": "write", "outcome": "invalid_response", "status": 200}]})
    assert "step write: PUT /api/v1/users/{sub}/settings: the body read back is not what was written" == j.states[
        "CheckFailed/settings_journey/step=write"].annotations["summary"]
    h = Sequence("backend_health")
    for at in (T0, T0 + 1):
        h.feed("invalid_response", at=at, status=200, message="GET /health answered a body that is not JSON")
    assert "GET /health answered a body that is not JSON" == h.states[
        "CheckFailed/backend_health"].annotations["summary"]


def test_a_journey_rate_limited_before_naming_a_step_resolves_when_the_journey_passes() -> None:
    """A journey rate-limited with no step named (its whole-journey CheckFailed fires after rate_limited_after)
    resolves once the journey passes again: step instances alone would never say GOOD about it, and it would
    stay firing for ever."""
    s = Sequence("settings_journey", make_config(alerts={"rate_limited_after": "2m"}))
    steps = [{"name": "read", "outcome": "ok", "status": 200}, {"name": "write", "outcome": "ok", "status": 200}]
    for minute in range(3):
        s.feed("rate_limited", at=T0 + 60 * minute, status=429)
    assert Status.FIRING == s.status("CheckFailed")
    assert [] == s.feed("ok", at=T0 + 200, status=200, details={"steps": steps})
    assert [("resolved", "CheckFailed")] == s.feed("ok", at=T0 + 230, status=200, details={"steps": steps})
