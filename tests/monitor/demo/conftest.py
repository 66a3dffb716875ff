"""Fixtures of the demo tests: one demo app per test module on a recording memory store, clients, probe deps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from monitor.demo.app import create_demo_app
from tests.monitor.demo.app_support import SECRET, RecordingStore
from tests.support.servers import serve_asgi
from tests.support.targets import DepsFactory


@pytest.fixture(scope="module")
def store() -> RecordingStore:
    """The memory store of this module's demo app (it records drop/restore calls)."""
    return RecordingStore()


@pytest.fixture(scope="module")
def base_url(store: RecordingStore) -> Iterator[str]:
    """The demo app, served on 127.0.0.1 for the whole module."""
    with serve_asgi(create_demo_app(jwt_secret=SECRET, store=store)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    """A client of the demo app; every fault is cleared when the test ends."""
    with httpx.Client(base_url=base_url, timeout=5, trust_env=False) as c:
        yield c
        c.delete("/_faults")


@pytest.fixture
async def make_deps() -> AsyncIterator[DepsFactory]:
    """Probe dependencies for the demo app's URL, closed after the test."""
    factory = DepsFactory()
    yield factory
    await factory.aclose()
