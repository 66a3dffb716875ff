"""Fixtures shared by the prober tests: real targets on 127.0.0.1 (a misbehaving one, a signed-in backend, a
Supabase Auth stand-in) and Deps factories."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from psycopg import sql

from tests.probes.signed_in import CLAIMS_SUB, EMAIL, PASSWORD, USER_ID, Made
from tests.support.postgres import SEED_TABLES, SeededDb
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


@pytest.fixture
def app_role(seeded_db: SeededDb) -> Iterator[str]:
    """A uniquely named NOLOGIN role like Supabase's `authenticated`: USAGE and SELECT on the seed tables, each
    with an owner policy on the JWT's sub; dropped after the test."""
    role = f"pam_app_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(role)
    seeded_db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident))
    try:
        seeded_db.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
        for table in SEED_TABLES:
            owner = "seller_id" if table == "marketplace_listings" else "user_id"
            seeded_db.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), ident))
            seeded_db.execute(sql.SQL("CREATE POLICY {} ON {} FOR SELECT TO {} USING ({} = " + CLAIMS_SUB + ")")
                              .format(sql.Identifier(f"own_{table}"), sql.Identifier(table), ident,
                                      sql.Identifier(owner)))
        yield role
    finally:
        with seeded_db.connect() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            conn.execute(sql.SQL("DROP ROLE {}").format(ident))
