"""lifecycle.hold, pure: when a dependent's firing may go to direct sinks, who depends on whom, the root's list."""

from __future__ import annotations

from typing import Any

from alerts.lifecycle.hold import (
    Seen,
    Verdict,
    also_failing,
    fresh,
    graph,
    outage_start,
    pre_existing,
    seen_after,
    verdict,
)
from monitor.core.results import Outcome
from tests.support.alerting import make_config, result

T = 1000.0
CHECKS = [
    {"name": "health", "kind": "http", "target": "backend", "path": "/health", "interval": "10s", "timeout": "2s"},
    {"name": "settings", "kind": "auth_contract", "target": "backend", "path": "/s", "interval": "30s"},
    {"name": "voice", "kind": "voice", "target": "backend", "path": "/v", "depends_on": ["settings"]},
    {"name": "db", "kind": "db", "target": "database"},
    {"name": "rest", "kind": "postgrest", "target": "backend", "required_tables": ["t"], "depends_on": ["db"]},
]


def seen(*runs: tuple[float, bool]) -> Seen | None:
    """What is known of a check after runs (start time, failed?) in order."""
    known: Seen | None = None
    for at, failed in runs:
        known = seen_after(known, result("backend_health", "connection_error" if failed else "ok", at=at,
                                         kind="http"))
    return known


def test_seen_keeps_the_start_of_a_spell_and_ignores_rate_limited() -> None:
    """A failing spell starts at its first failing run, its outage at the end of the passing run before it; a
    rate-limited run changes nothing."""
    known = seen((T, False), (T + 10, True), (T + 20, True))
    assert known is not None
    assert (T + 20, True, T + 10, T) == (known.at, known.failing, known.since, known.outage)
    assert known is seen_after(known, result("backend_health", Outcome.RATE_LIMITED, status=429, at=T + 30,
                                             kind="http"))
    assert seen_after(None, result("backend_health", Outcome.RATE_LIMITED, status=429, at=T, kind="http")) is None


def test_a_failing_root_holds() -> None:
    """The root's latest result failed: HOLD, however long the dependent has waited."""
    own = seen((T, True))
    assert Verdict.HOLD == verdict(own, [seen((T - 5, True))], now=T + 999, release_at=T + 1)


def test_no_news_of_the_root_waits_until_release_at_then_sends() -> None:
    """The root last ran before the dependent began to fail (or never): WAIT, then SEND once release_at passed."""
    own = seen((T, True), (T + 2, True))
    for root in (seen((T - 5, False)), None):
        assert Verdict.WAIT == verdict(own, [root], now=T + 5, release_at=T + 12)
        assert Verdict.SEND == verdict(own, [root], now=T + 12, release_at=T + 12)


def test_a_root_passing_after_the_dependent_failed_sends() -> None:
    """The root answered well after the dependent's failure began: the dependent's problem is its own."""
    assert Verdict.SEND == verdict(seen((T, True)), [seen((T - 30, False), (T + 1, False))], now=T + 2,
                                   release_at=T + 12)


def test_a_root_that_recovered_holds_an_alert_whose_failing_run_began_before() -> None:
    """Root failed then recovered at T+20: the dependent's failing run from T+15 proves nothing (HOLD, an outage's
    alert, which the engine lets the dependent's next fresh result decide); a failing run from T+25 sends."""
    root = seen((T, True), (T + 20, False))
    assert Verdict.HOLD == verdict(seen((T + 5, True), (T + 15, True)), [root], now=T + 21, release_at=T + 17)
    assert Verdict.SEND == verdict(seen((T + 5, True), (T + 25, True)), [root], now=T + 26, release_at=T + 17)


def test_a_rate_limited_alert_is_judged_from_when_it_began() -> None:
    """A CheckFailed raised by a long rate-limited spell (the dependent's latest conclusive result passed): it is
    sent when the roots have been fine since before it began, held when a root recovered after it began; never
    held for ever because the dependent has no failing result (the old verdict waited for one)."""
    own = seen((T - 600, False))
    assert Verdict.SEND == verdict(own, [seen((T - 900, False), (T + 1, False))], now=T + 2, release_at=T + 12,
                                   started_at=T)
    assert Verdict.HOLD == verdict(own, [seen((T - 900, True), (T + 1, False))], now=T + 2, release_at=T + 12,
                                   started_at=T)


def test_fresh_means_begun_after_every_root_passed_again() -> None:
    """A dependent's run is news after an outage only if it began once every root was passing again."""
    back = seen((T, True), (T + 20, False))
    assert [False, True, True] == [fresh(T + d, [back]) for d in (19, 20, 21)]
    assert False is fresh(T + 99, [back, seen((T + 30, True))])
    assert False is fresh(T + 99, [back, None])


def test_alerts_begun_before_the_outage_are_suspended() -> None:
    """The root's last good run ended at T+2 (a run takes 2 s here): an alert begun at T+1 pre-exists the outage and
    is suspended; one begun at T+12 is the outage's. With the root not seen since the dependent's outcome changed,
    a failing result leaves alerts begun before that change alone, for at most the wait bound."""
    def run(at: float, failed: bool) -> Any:
        return result("backend_health", "connection_error" if failed else "ok", at=at, kind="http",
                      finished_at=at + 2)
    root = seen_after(seen_after(None, run(T, False)), run(T + 10, True))
    assert T + 2 == outage_start(root)
    own = seen_after(None, run(T + 11, True))
    assert [True, False] == [pre_existing(at, own, [root], failed=True, now=T + 13, bound=35)
                             for at in (T + 1, T + 12)]
    quiet_root = seen_after(None, run(T, False))
    own = seen_after(seen_after(None, run(T - 60, False)), run(T + 11, True))
    assert True is pre_existing(T - 100, own, [quiet_root], failed=True, now=T + 13, bound=35)
    assert False is pre_existing(T - 100, own, [quiet_root], failed=False, now=T + 13, bound=35)
    assert False is pre_existing(T - 100, own, [quiet_root], failed=True, now=T + 50, bound=35)


def test_every_root_must_clear() -> None:
    """With two roots, one passing and one not seen since: WAIT."""
    own = seen((T, True))
    assert Verdict.WAIT == verdict(own, [seen((T - 30, False), (T + 1, False)), seen((T - 9, False))], now=T + 2,
                                   release_at=T + 12)


def test_graph_from_health_check_and_depends_on() -> None:
    """The target's health_check is every other check's root on that target; depends_on adds roots; `below`
    follows chains; a disabled root holds nothing back; the wait is the longest root interval + timeout."""
    targets = {"backend": {"base_url": "http://127.0.0.1:1", "health_check": "health"},
               "database": {"dsn": "postgresql://u@127.0.0.1:1/d"}}
    config = make_config(checks=CHECKS, targets=targets)
    g = graph(config, {c["name"] for c in CHECKS})
    assert {"settings": ("health",), "voice": ("health", "settings"), "rest": ("db", "health")} == dict(g.roots)
    assert {"health": ("rest", "settings", "voice"), "settings": ("voice",), "db": ("rest",)} == dict(g.below)
    assert (12.0, 35.0) == (g.bound["settings"], g.bound["voice"])
    assert {"voice": ("settings",), "rest": ("db",)} == dict(graph(config, {"settings", "voice", "db", "rest"}).roots)


def test_also_failing_groups_by_target() -> None:
    """`also failing on target backend: a (X), b (X, Y); on target database: ...`, sorted; empty for none."""
    text = also_failing([("backend", "voice", "VoiceDegraded"), ("database", "db2", "DatabaseDown"),
                         ("backend", "voice", "EndpointDown"), ("backend", "settings", "EndpointDown")])
    assert ("also failing on target backend: settings (EndpointDown), voice (EndpointDown, VoiceDegraded); "
            "on target database: db2 (DatabaseDown)") == text
    assert "" == also_failing([])
