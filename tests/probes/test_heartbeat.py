"""Kind `heartbeat` (probes/heartbeat.py): the verdict on a job's calls at a given time, judged with injected
times (no sleeping), the book shared by the endpoint and the probe, and the config's period and look frequency."""

from __future__ import annotations

import asyncio

import pytest

from monitor.core.config import Config, HeartbeatCheck
from monitor.core.results import Outcome
from probes.deps import Deps
from probes.heartbeat import BOOK, Beat, HeartbeatBook, judge, probe

T0 = 1_800_000_000.0
HOUR = 3600.0


def _check(interval: str = "1h", grace: str = "10m") -> HeartbeatCheck:
    config = Config.model_validate({"checks": [{"name": "nightly", "kind": "heartbeat", "interval": interval,
                                                "grace": grace, "token": "t" * 20}]})
    check = config.checks[0]
    assert isinstance(check, HeartbeatCheck)
    return check


def test_interval_is_the_jobs_period_and_the_daemon_looks_more_often() -> None:
    """`interval: 1h, grace: 10m` keeps 1 h as the period and schedules a look every 30 s (min(grace, 30 s));
    a 5 s grace looks every 5 s, with the timeout kept under it."""
    check = _check()
    assert (HOUR, 600.0, 30.0) == (check.period, check.grace, check.interval)
    quick = _check("10s", "5s")
    assert (10.0, 5.0) == (quick.period, quick.interval)
    assert quick.timeout <= quick.interval / 2


@pytest.mark.parametrize(("pinged_ago", "now_after_start", "expected"), [
    (30 * 60, 2 * HOUR, Outcome.OK),  # called half an hour ago: inside 1 h + 10 min
    (69 * 60, 2 * HOUR, Outcome.OK),  # 69 min: inside the grace
    (71 * 60, 2 * HOUR, Outcome.HEARTBEAT_MISSED),  # 71 min: past 1 h + 10 min
])
def test_a_call_within_interval_plus_grace_is_ok_and_later_is_missed(
        pinged_ago: float, now_after_start: float, expected: Outcome) -> None:
    """The deadline is the last call plus interval plus grace."""
    now = T0 + now_after_start
    result = judge(_check(), Beat(first_seen=T0, last_ping=now - pinged_ago), now, started=T0)
    assert expected == result.outcome


def test_a_job_that_never_called_is_missed_from_when_the_check_was_first_watched() -> None:
    """Never called: ok (waiting) until first_seen + interval + grace, then missed, saying it never called."""
    check = _check()
    beat = Beat(first_seen=T0)
    waiting = judge(check, beat, T0 + HOUR, started=T0)
    missed = judge(check, beat, T0 + HOUR + 601, started=T0)
    assert (Outcome.OK, Outcome.HEARTBEAT_MISSED) == (waiting.outcome, missed.outcome)
    assert waiting.message.startswith("waiting for the first heartbeat")
    assert missed.message.startswith("no heartbeat since it was first watched 1.2h ago")


def test_a_reported_failure_holds_until_the_next_good_call() -> None:
    """A call to /fail after the last good call is heartbeat_missed with its message, even before the deadline;
    a good call after it is ok again."""
    check = _check()
    failed = Beat(first_seen=T0, last_ping=T0 + 10, failed_at=T0 + 20, message="backup: disk full")
    result = judge(check, failed, T0 + 30, started=T0)
    assert Outcome.HEARTBEAT_MISSED == result.outcome
    assert "the job reported a failure 10s ago: backup: disk full" == result.message
    recovered = Beat(first_seen=T0, last_ping=T0 + 40, failed_at=T0 + 20, message="backup: disk full")
    assert Outcome.OK == judge(check, recovered, T0 + 50, started=T0).outcome


def test_after_a_restart_a_job_gets_at_least_grace_but_an_old_miss_is_not_forgotten() -> None:
    """The last call survives a restart: a job that called 3 h before a restart is missed once `grace` has
    passed since the start (not a full interval later), and not before (the daemon's downtime is not its miss)."""
    check = _check()
    beat = Beat(first_seen=T0, last_ping=T0)
    started = T0 + 3 * HOUR
    assert Outcome.OK == judge(check, beat, started + 599, started=started).outcome
    assert Outcome.HEARTBEAT_MISSED == judge(check, beat, started + 601, started=started).outcome


def test_the_book_records_calls_and_tells_its_listener() -> None:
    """watch() marks a new check first seen once; ping() and fail() record the clock's time; every change is
    handed to the listener (the daemon's table)."""
    now = [T0]
    seen: list[tuple[str, Beat]] = []
    book = HeartbeatBook(lambda: now[0])
    book.persist_with(lambda name, beat: seen.append((name, beat)))
    book.watch(["a"])
    now[0] += 5
    book.watch(["a"])  # already watched: unchanged
    book.ping("a")
    now[0] += 5
    book.fail("a", "exit 3")
    assert Beat(T0, T0 + 5, T0 + 10, "exit 3") == book.get("a")
    assert [Beat(T0), Beat(T0, T0 + 5), Beat(T0, T0 + 5, T0 + 10, "exit 3")] == [b for _, b in seen]


def test_the_probe_judges_the_daemons_book_and_says_when_there_is_none() -> None:
    """With the book in deps.resources the probe judges it at the deps clock's time; without one (a one-off
    `pam-monitor check` where state_dir holds no calls) it says there is nothing to judge."""
    check = _check()
    deps = Deps(targets={}, body_limit=1024, user_agent="t")
    alone = asyncio.run(probe(check, deps, 0.0))
    book = HeartbeatBook(deps.clock.time)
    book.ping("nightly")
    deps.resources[BOOK] = book
    judged = asyncio.run(probe(check, deps, 0.0))
    assert (Outcome.INTERNAL_ERROR, Outcome.OK) == (alone.outcome, judged.outcome)
    assert "state_dir holds none" in alone.message
    assert judged.message.startswith("last heartbeat 0s ago")
