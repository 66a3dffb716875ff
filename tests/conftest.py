"""Shared pytest configuration: fixture plugins used across the test packages, and global-state resets."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = ["tests.support.postgres"]


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Undo what configure_logging() did in a test: structlog's config and the root logger's handlers and level.

    Without this a test that configures logging at info decides whether a later test sees debug events.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
