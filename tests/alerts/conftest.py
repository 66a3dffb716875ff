"""Fixtures for the alert tests: a real Alertmanager, and a recording sink on a real local server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.alerting import Recorder
from tests.support.alertmanager import alertmanager
from tests.support.servers import serve_asgi

__all__ = ["alertmanager", "recorder"]


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    """A Recorder served on 127.0.0.1, with its base URL."""
    rec = Recorder()
    with serve_asgi(rec.app()) as url:
        yield rec, url
