"""Logging: structlog to stdout, one JSON object per line; every library's records go through the same pipeline."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor

from monitor.core.secrets import Redactor, redact_values

LogFormat = Literal["json", "console"]
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Libraries whose INFO lines are per-request noise (httpx logs every URL, which may carry a token).
_QUIET = {"httpx": logging.WARNING, "httpcore": logging.WARNING, "apscheduler": logging.WARNING,
          "uvicorn.access": logging.WARNING, "asyncio": logging.WARNING, "tzlocal": logging.WARNING}
_FIRST = ("ts", "level", "event", "logger")


def _scrub_processor(redactor: Redactor) -> Processor:
    """A structlog processor replacing every known secret in any string field, at any depth, but names (check,
    step, kind, target, alert: monitor.core.secrets.IDENTIFIER_KEYS) (the second lock on the door: secrets never
    reach a log call by design, but a library may put a DSN or webhook URL into an exception)."""

    def scrub(logger: Any, name: str, event_dict: EventDict) -> EventDict:
        scrubbed: EventDict = redact_values(event_dict, redactor.scrub)
        return scrubbed

    return scrub


def _drop_color_message(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> EventDict:
    # uvicorn duplicates its message with ANSI colours in an extra field.
    event_dict.pop("color_message", None)
    return dict(event_dict)


def configure_logging(
    level: str = "info", fmt: LogFormat = "json", stream: TextIO | None = None,
    redactor: Redactor | None = None,
) -> Redactor:
    """Send structlog and stdlib logging to `stream` (stdout) as JSON lines or coloured console lines."""
    redactor = redactor or Redactor()
    numeric = _LEVELS.get(level, logging.INFO)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    renderer: Processor = (
        structlog.processors.JSONRenderer() if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=(stream or sys.stdout).isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else _identity,
            _scrub_processor(redactor),
            _order_keys if fmt == "json" else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, floor in _QUIET.items():
        logging.getLogger(name).setLevel(max(floor, numeric))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    logging.captureWarnings(True)
    return redactor


def _order_keys(logger: Any, name: str, event_dict: EventDict) -> EventDict:
    # ts, level, event first: a person reading raw JSON lines finds what happened without scrolling.
    ordered = {k: event_dict[k] for k in _FIRST if k in event_dict}
    ordered.update((k, v) for k, v in event_dict.items() if k not in ordered)
    return ordered


def _identity(logger: Any, name: str, event_dict: EventDict) -> EventDict:
    return event_dict
