"""Fixtures shared by the prober tests: real targets on 127.0.0.1 (a misbehaving one, a signed-in backend, a
Supabase Auth stand-in) and Deps factories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.probes.signed_in import EMAIL, PASSWORD, USER_ID, Made
from tests.support.servers import serve_asgi
from tests.support.signed_in import Auth, Backend, create_auth_app, create_backend_app
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


@pytest.fixture
async def made() -> AsyncIterator[Made]:
    factory = Made()
    yield factory
    await factory.aclose()


@pytest.fixture
def backend() -> Iterator[tuple[Backend, str]]:
    state = Backend()
    with serve_asgi(create_backend_app(state)) as url:
        yield state, url


@pytest.fixture
def auth() -> Iterator[tuple[Auth, str]]:
    state = Auth(users={EMAIL: (PASSWORD, USER_ID)})
    with serve_asgi(create_auth_app(state)) as url:
        yield state, url
