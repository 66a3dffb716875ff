"""Fixtures shared by the HTTP prober tests: a real misbehaving target on 127.0.0.1 and a Deps factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.servers import serve_asgi
from tests.support.targets import DepsFactory, create_target_app


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_asgi(create_target_app()) as url:
        yield url


@pytest.fixture
async def make_deps() -> AsyncIterator[DepsFactory]:
    factory = DepsFactory()
    yield factory
    await factory.aclose()
