"""Tests for monitor.logs: one JSON object per line for our events and every library's, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging

import structlog

from monitor.logs import configure_logging


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_structlog_and_stdlib_records_are_json_lines() -> None:
    """Our events, a library's %-formatted record and an exception all come out as single JSON lines."""
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    structlog.get_logger("pam_monitor.test").info("check.finished", check="a", duration_s=0.1)
    logging.getLogger("apscheduler.scheduler").warning("Run time of job %r was missed", "a")
    try:
        raise ValueError("bad")
    except ValueError:
        structlog.get_logger("pam_monitor.test").exception("probe.crashed")
    structlog.get_logger("pam_monitor.test").debug("not.shown")
    lines = _lines(stream)
    assert ["check.finished", "Run time of job 'a' was missed", "probe.crashed"] == [e["event"] for e in lines]
    assert ["ts", "level", "event", "logger", "check", "duration_s"] == list(lines[0])
    assert "ValueError: bad" in str(lines[2]["exception"])


def test_secret_values_are_scrubbed_from_every_field() -> None:
    """A secret that reaches a log call anyway (library message, field) is replaced by asterisks."""
    stream = io.StringIO()
    redactor = configure_logging("info", "json", stream=stream)
    redactor.update(["hunter2-password", "xoxb-slack-token"])
    structlog.get_logger("pam_monitor.test").error("db.failed", error="auth failed for postgresql://u:hunter2-password@h")
    logging.getLogger("httpx").error("POST https://hooks.slack.com/services/xoxb-slack-token failed")
    text = stream.getvalue()
    assert "hunter2-password" not in text
    assert "xoxb-slack-token" not in text
    assert 2 == text.count("**********")


def test_noisy_libraries_are_quiet_at_info() -> None:
    """httpx's per-request INFO lines (which carry URLs) are not emitted at the default level."""
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1/health")
    assert "" == stream.getvalue()
