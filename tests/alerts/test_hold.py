"""alerts.hold, pure: when a dependent's firing may go to direct sinks, who depends on whom, the root's list."""

from __future__ import annotations

from alerts.hold import Seen, Verdict, also_failing, graph, seen_after, verdict
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
    """A failing spell starts at its first failing run; a rate-limited run changes nothing."""
    known = seen((T, False), (T + 10, True), (T + 20, True))
    assert Seen(T + 20, True, T + 10) == known
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


def test_a_root_that_recovered_holds_until_the_dependent_fails_again() -> None:
    """Root failed then recovered at T+20: the dependent's failing run from T+15 proves nothing (HOLD); its next
    failing run, after the recovery, sends; a dependent now passing is never sent."""
    root = seen((T, True), (T + 20, False))
    assert Verdict.HOLD == verdict(seen((T + 5, True), (T + 15, True)), [root], now=T + 21, release_at=T + 17)
    assert Verdict.SEND == verdict(seen((T + 5, True), (T + 25, True)), [root], now=T + 26, release_at=T + 17)
    assert Verdict.HOLD == verdict(seen((T + 5, True), (T + 25, False)), [root], now=T + 26, release_at=T + 17)


def test_a_dependent_not_seen_since_a_restart_holds() -> None:
    """After a restart nothing is known of the dependent yet: its own next result decides."""
    assert Verdict.HOLD == verdict(None, [seen((T, False))], now=T + 100, release_at=T)


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
