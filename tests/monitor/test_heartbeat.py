"""The heartbeat endpoint and table (monitor/heartbeat.py) over real HTTP on 127.0.0.1, and a heartbeat check in
a real `pam-monitor run`: calls recorded, tokens checked without saying what was wrong, rate limits, bounded and
redacted failure messages, no token in any log, a miss that fires HeartbeatMissed, the last call kept across a
restart."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from monitor.core.config import Config, HeartbeatCheck
from monitor.heartbeat import BURST, MESSAGE_MAX, HeartbeatEndpoint, HeartbeatTable
from monitor.metrics import Metrics
from monitor.server import create_app
from monitor.state import State
from probes.heartbeat import Beat, HeartbeatBook
from tests.support.daemon import run_daemon
from tests.support.servers import free_port, serve_asgi

TOKEN = "hb-token-0123456789-never-logged"
OTHER_SECRET = "db-password-in-a-fail-message"


class Clock:
    """A settable clock (seconds) for the book and the rate limits."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _endpoint(clock: Clock) -> tuple[HeartbeatBook, HeartbeatEndpoint]:
    config = Config.model_validate({
        "targets": {"backend": {"base_url": "http://127.0.0.1:9"}},
        "checks": [{"name": "nightly", "kind": "heartbeat", "interval": "1h", "token": TOKEN},
                   {"name": "health", "kind": "http", "target": "backend"}]})
    checks = {c.name: c for c in config.checks if isinstance(c, HeartbeatCheck)}
    book = HeartbeatBook(clock)
    return book, HeartbeatEndpoint(book, lambda: checks, lambda text: text.replace(OTHER_SECRET, "**********"),
                                   clock)


def _app(endpoint: HeartbeatEndpoint) -> object:
    return create_app(State(lambda: 0.0), Metrics(process_metrics=False), lambda: "svc", heartbeat=endpoint)


def test_calls_with_the_token_are_recorded_and_others_refused_alike() -> None:
    """POST with a bearer token and GET with ?token= record a call; an unknown check or a check of another kind
    is 404; no token is 401 and a wrong one 403, with the same body; nothing of a refused call is recorded."""
    clock = Clock()
    book, endpoint = _endpoint(clock)
    with serve_asgi(_app(endpoint)) as base, capture_logs() as logs:
        posted = httpx.post(f"{base}/heartbeat/nightly", headers={"Authorization": f"Bearer {TOKEN}"})
        first = book.get("nightly")
        clock.now += 60
        got = httpx.get(f"{base}/heartbeat/nightly", params={"token": TOKEN})
        unknown = httpx.post(f"{base}/heartbeat/nope", headers={"Authorization": f"Bearer {TOKEN}"})
        other_kind = httpx.post(f"{base}/heartbeat/health", headers={"Authorization": f"Bearer {TOKEN}"})
        clock.now += 60
        none = httpx.post(f"{base}/heartbeat/nightly")
        wrong = httpx.post(f"{base}/heartbeat/nightly", headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
    assert [200, 200, 404, 404, 401, 403] == [r.status_code for r in (posted, got, unknown, other_kind, none, wrong)]
    assert none.text == wrong.text == "unauthorized\n"
    assert first is not None
    assert clock.now - 120 == first.last_ping
    assert clock.now - 60 == book.get("nightly").last_ping  # type: ignore[union-attr]
    assert TOKEN not in json.dumps(logs)
    assert TOKEN[:-1] not in json.dumps(logs)
    assert ["heartbeat.refused", "heartbeat.refused"] == [e["event"] for e in logs if e["log_level"] == "warning"]


def test_a_failure_report_keeps_a_short_redacted_message() -> None:
    """POST /fail records a failure with its body as message: control characters gone, secrets redacted, cut to
    MESSAGE_MAX characters; GET /fail?message= works for curl in cron."""
    clock = Clock()
    book, endpoint = _endpoint(clock)
    long = f"exit 3\n\x1b[31mpassword {OTHER_SECRET}\x1b[0m " + "x" * 500
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve_asgi(_app(endpoint)) as base:
        posted = httpx.post(f"{base}/heartbeat/nightly/fail", headers=auth, content=long.encode())
        kept = book.get("nightly")
        clock.now += 5
        got = httpx.get(f"{base}/heartbeat/nightly/fail", params={"token": TOKEN, "message": "rsync failed"})
    assert (200, 200) == (posted.status_code, got.status_code)
    assert kept is not None
    assert MESSAGE_MAX == len(kept.message)
    assert kept.message.startswith("exit 3  [31mpassword ********** [0m xxx")
    assert OTHER_SECRET not in kept.message
    assert Beat(kept.first_seen, None, clock.now, "rsync failed") == book.get("nightly")


def test_calls_are_rate_limited_per_check_and_bad_tokens_do_not_lock_the_job_out() -> None:
    """Past a burst of BURST calls in the same instant a check gets 429 with Retry-After; a second later it may
    call again. A flood of wrong tokens is limited on its own and never stops the right token."""
    clock = Clock()
    _, endpoint = _endpoint(clock)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve_asgi(_app(endpoint)) as base, httpx.Client() as client:
        bad = [client.post(f"{base}/heartbeat/nightly", params={"token": "wrong"}).status_code
               for _ in range(int(BURST) + 2)]
        good = [client.post(f"{base}/heartbeat/nightly", headers=auth).status_code for _ in range(int(BURST) + 1)]
        clock.now += 1.0
        later = client.post(f"{base}/heartbeat/nightly", headers=auth)
    assert [403] * int(BURST) + [429, 429] == bad
    assert [200] * int(BURST) + [429] == good
    assert 200 == later.status_code


def test_the_table_keeps_beats_across_connections(tmp_path: Path) -> None:
    """Saved beats load back from a new connection to the same heartbeat database (heartbeats.sqlite3), beside the
    alert store's tables."""
    table = HeartbeatTable(tmp_path)
    table.save("nightly", Beat(1.0, 2.0, None, ""))
    table.save("nightly", Beat(1.0, 3.0, 4.0, "disk full"))
    table.save("hourly", Beat(5.0))
    table.close()
    again = HeartbeatTable(tmp_path)
    assert {"nightly": Beat(1.0, 3.0, 4.0, "disk full"), "hourly": Beat(5.0)} == again.load()
    again.close()
    names = sqlite3.connect(tmp_path / "heartbeats.sqlite3").execute("SELECT name FROM sqlite_master").fetchall()
    assert ("heartbeats",) in names


def _daemon_config(tmp_path: Path) -> Path:
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(textwrap.dedent(f"""\
        service: test-backend
        state_dir: {tmp_path / "state"}
        shutdown_timeout: 2s
        checks:
          - {{name: nightly, kind: heartbeat, interval: 1s, grace: 1s, token: "${{HB_TOKEN}}",
              failure_threshold: 1, success_threshold: 1}}
        """))
    return path


@pytest.mark.process  # runs the daemon as a process
def test_a_daemon_takes_calls_pages_a_miss_and_remembers_the_last_call(tmp_path: Path) -> None:
    """In `pam-monitor run`: a curl-style GET keeps the check ok; with no call for interval + grace it is
    heartbeat_missed and HeartbeatMissed fires (critical); after a restart /status still shows the last call,
    and the token is in no log line."""
    config = _daemon_config(tmp_path)
    env = {"HB_TOKEN": TOKEN}
    port = free_port()
    with run_daemon(config, port, tmp_path, env=env) as daemon:
        base = f"http://127.0.0.1:{port}"
        assert 200 == httpx.get(f"{base}/heartbeat/nightly", params={"token": TOKEN}).status_code
        last = daemon.wait_for(lambda: (daemon.check("nightly").get("details") or {}).get("last_ping"),
                               what="a run that saw the call")
        assert "ok" == daemon.check("nightly")["outcome"]
        daemon.wait_for(lambda: daemon.check("nightly")["outcome"] == "heartbeat_missed", what="a miss")
        firing = daemon.wait_for(lambda: [a for a in daemon.status()["alerts"]
                                          if a["alertname"] == "HeartbeatMissed" and a["state"] == "firing"],
                                 what="HeartbeatMissed firing")
        assert "critical" == firing[0]["labels"]["severity"]
        logs = daemon.raw_logs()
    with run_daemon(config, port, tmp_path, env=env) as daemon:
        daemon.wait_for(lambda: daemon.check("nightly").get("details"), what="a first run after the restart")
        assert last == daemon.check("nightly")["details"]["last_ping"]
        logs += daemon.raw_logs()
    assert TOKEN not in logs


@pytest.mark.process  # runs the daemon and check as processes
def test_check_judges_the_calls_a_daemon_saved(tmp_path: Path) -> None:
    """`pam-monitor check` judges heartbeat checks from the calls saved in state_dir (no restart grace): a recent
    call is ok, an old one heartbeat_missed; with no saved calls the check says it has nothing to judge."""
    import time

    from tests.monitor.test_cli import _run

    state = tmp_path / "state"
    state.mkdir()
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(f"""\
        state_dir: {state}
        checks:
          - {{name: fresh, kind: heartbeat, interval: 1h, grace: 5m, token: "{TOKEN}"}}
          - {{name: stale, kind: heartbeat, interval: 1h, grace: 5m, token: "{TOKEN}"}}
        """))
    nothing = json.loads(_run("check", "-c", str(path), "--format", "json", cwd=tmp_path).stdout)
    table = HeartbeatTable(state)
    now = time.time()
    table.save("fresh", Beat(now - 7200, now - 600))
    table.save("stale", Beat(now - 7200, now - 3 * 3600))
    table.close()
    done = _run("check", "-c", str(path), "--format", "json", cwd=tmp_path)
    doc = json.loads(done.stdout)
    assert ["internal_error", "internal_error"] == [c["outcome"] for c in nothing["checks"]]
    assert [("fresh", "ok"), ("stale", "heartbeat_missed")] == [(c["name"], c["outcome"]) for c in doc["checks"]]
    assert 1 == done.returncode
