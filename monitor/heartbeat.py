"""The heartbeat endpoint (`POST|GET /heartbeat/<check>`, `/heartbeat/<check>/fail`) and the table that keeps the
last calls across restarts.

Jobs authenticate with their check's `token` (`Authorization: Bearer <token>` or `?token=<token>`), compared in
constant time. Unknown checks (and checks of other kinds) get 404; a missing or wrong token 401 / 403 with the
same body, so the answer never says what was wrong; calls beyond `RATE_PER_S` a check (burst `BURST`) get 429.
Nothing here logs a token or the query string; the /fail message is cut to `MESSAGE_MAX` characters, stripped of
control characters and redacted of every configured secret before it is kept.
"""

from __future__ import annotations

import hmac
import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from alerts.persist.database import FILENAME
from monitor.core.config import HeartbeatCheck
from probes.heartbeat import Beat, HeartbeatBook

log = structlog.get_logger("pam_monitor.heartbeat")

RATE_PER_S = 1.0
BURST = 10.0
"""Calls a check may make: a burst of 10, then one a second (a job calls once a run; more is a loop gone wrong
or someone else). Bad-token calls have their own bucket, so a flood of them never locks the job out."""
MESSAGE_MAX = 200
BODY_READ_MAX = 4096
_SCHEMA = """CREATE TABLE IF NOT EXISTS heartbeats (
    check_name TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_ping REAL, failed_at REAL, message TEXT NOT NULL
)"""


class HeartbeatTable:
    """The `heartbeats` table in the state database (alerts.sqlite3 in `state_dir`), on its own connection."""

    def __init__(self, state_dir: Path, *, read_only: bool = False) -> None:
        self._lock = threading.Lock()
        path = Path(state_dir) / FILENAME
        if read_only:
            self._db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=1.0,
                                       check_same_thread=False)
            return
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=5.0, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)

    def load(self) -> dict[str, Beat]:
        """Every saved beat by check name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT check_name, first_seen, last_ping, failed_at, message FROM heartbeats").fetchall()
        return {str(name): Beat(float(first), _opt(ping), _opt(failed), str(message))
                for name, first, ping, failed, message in rows}

    def save(self, check: str, beat: Beat) -> None:
        """Keep one check's beat; a failing disk is logged and the beat stays in memory."""
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO heartbeats VALUES (?, ?, ?, ?, ?) ON CONFLICT(check_name) DO UPDATE SET "
                    "first_seen = excluded.first_seen, last_ping = excluded.last_ping, "
                    "failed_at = excluded.failed_at, message = excluded.message",
                    (check, beat.first_seen, beat.last_ping, beat.failed_at, beat.message))
        except sqlite3.Error as exc:
            log.warning("heartbeat.save_failed", check=check, error=str(exc))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


def saved_book(state_dir: Path, clock: Callable[[], float]) -> HeartbeatBook | None:
    """The calls a daemon saved in `state_dir`, read without writing, for a one-off `pam-monitor check` (judged
    without a restart's grace); None when there are none."""
    if not (Path(state_dir) / FILENAME).is_file():
        return None
    try:
        table = HeartbeatTable(state_dir, read_only=True)
        try:
            beats = table.load()
        finally:
            table.close()
    except sqlite3.Error:  # no heartbeats table: no daemon with heartbeat checks ran here
        return None
    book = HeartbeatBook(clock, started=float("-inf"))
    book.load(beats)
    return book


def _opt(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


class _Bucket:
    """A token bucket: `take()` is False when the caller is over its rate."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def clean_message(text: str, redact: Callable[[str], str]) -> str:
    """A /fail message as kept: printable characters only, redacted, then cut to MESSAGE_MAX."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return redact(printable)[:MESSAGE_MAX]


class HeartbeatEndpoint:
    """The ASGI handler of /heartbeat/<check>[/fail]; `checks()` gives the running config's heartbeat checks."""

    def __init__(self, book: HeartbeatBook, checks: Callable[[], Mapping[str, HeartbeatCheck]],
                 redact: Callable[[str], str], monotonic: Callable[[], float]) -> None:
        self.book = book
        self._checks = checks
        self._redact = redact
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._good: dict[str, _Bucket] = {}
        self._bad: dict[str, _Bucket] = {}

    def _allowed(self, buckets: dict[str, _Bucket], name: str) -> bool:
        now = self._monotonic()
        with self._lock:
            bucket = buckets.get(name)
            if bucket is None:
                bucket = buckets[name] = _Bucket(RATE_PER_S, BURST, now)
            return bucket.take(now)

    async def __call__(self, request: Request) -> Response:
        """Record a call (or a failure report) when the check exists and the token is right."""
        name = str(request.path_params["check"])
        failed = request.url.path.endswith("/fail")
        check = self._checks().get(name)
        if check is None:
            return PlainTextResponse("no heartbeat check of that name\n", status_code=404)
        given = _token(request)
        expected = check.token.get_secret_value().encode()
        if given is None or not hmac.compare_digest(given.encode(), expected):
            if not self._allowed(self._bad, name):
                return _too_many()
            log.warning("heartbeat.refused", check=name, token_given=given is not None)
            return PlainTextResponse("unauthorized\n", status_code=401 if given is None else 403,
                                     headers={"WWW-Authenticate": "Bearer"})
        if not self._allowed(self._good, name):
            return _too_many()
        if failed:
            message = clean_message(await _message(request), self._redact)
            self.book.fail(name, message)
            log.info("heartbeat.failed", check=name, message=message)
        else:
            self.book.ping(name)
            log.debug("heartbeat.received", check=name)
        return PlainTextResponse("ok\n")


def _too_many() -> Response:
    return PlainTextResponse("too many calls; retry in a second\n", status_code=429, headers={"Retry-After": "1"})


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    query = request.query_params.get("token")
    return query or None


async def _message(request: Request) -> str:
    """The /fail message: `?message=` or the request body (at most BODY_READ_MAX bytes are read)."""
    if "message" in request.query_params:
        return request.query_params["message"]
    if request.method != "POST":
        return ""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) >= BODY_READ_MAX:
            break
    return bytes(data[:BODY_READ_MAX]).decode("utf-8", errors="replace")


__all__ = ["HeartbeatEndpoint", "HeartbeatTable", "clean_message", "saved_book"]
