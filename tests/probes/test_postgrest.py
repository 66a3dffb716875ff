"""The `postgrest` prober against a real HTTP server reproducing PostgREST's and Supabase's documented answers.

Unreachable or broken servers (refused, DNS, hang, garbage, closed, reset) are in test_contract.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from monitor.core.config import PostgrestCheck, Target
from monitor.core.results import Outcome, ProbeResult
from probes.deps import Deps
from tests.support.fake_postgrest import FakePostgrest, pgrst_error
from tests.support.servers import serve_asgi
from tests.support.targets import run_probe

SEED = ["user_settings", "affiliate_sales", "user_wishlists", "marketplace_listings", "group_trip_participants"]
API_KEY = "anon-key-5f1e0c9a-NEVER-IN-RESULTS"
JWT = "eyJhbGciOiJIUzI1NiJ9.user-jwt-NEVER-IN-RESULTS.sig"


def make_check(**overrides: Any) -> PostgrestCheck:
    fields: dict[str, Any] = {
        "name": "rest_tables", "kind": "postgrest", "target": "supabase", "interval": 30, "timeout": 3,
        "failure_threshold": 2, "success_threshold": 2, "required_tables": list(SEED),
    }
    fields.update(overrides)
    return PostgrestCheck(**fields)


@pytest.fixture
def fake() -> FakePostgrest:
    return FakePostgrest(tables={"public": set(SEED), "auth": {"users"}}, gateway_key=API_KEY, jwt=API_KEY)


@pytest.fixture
def base_url(fake: FakePostgrest) -> Iterator[str]:
    with serve_asgi(fake.app()) as url:
        yield url


@contextlib.asynccontextmanager
async def deps_for(target: Target) -> AsyncIterator[Deps]:
    deps = Deps(targets={"supabase": target}, max_in_flight=4, body_limit=1 << 20,
                user_agent="pam-monitor-test")
    try:
        yield deps
    finally:
        await deps.aclose()


async def run(base_url: str, *, api_key: str | None = API_KEY, bearer: str | None = None,
              **overrides: Any) -> ProbeResult:
    target = Target(base_url=base_url, api_key=api_key, bearer_token=bearer)
    async with deps_for(target) as deps:
        return await run_probe(make_check(**overrides), deps)


def assert_no_secret(result: ProbeResult) -> None:
    for secret in (API_KEY, JWT):
        assert secret not in repr(result)


async def test_all_tables_present_is_ok(fake: FakePostgrest, base_url: str) -> None:
    """Every table answers 200: ok, all tables present, and each request carried the documented query."""
    result = await run(base_url)
    assert result.outcome == Outcome.OK, result.message
    assert dict(result.tables) == dict.fromkeys(SEED, True)
    assert result.status_code == 200
    assert sorted(r["table"] for r in fake.received) == sorted(SEED)
    assert {r["query"] for r in fake.received} == {"select=%2A&limit=0"}
    assert_no_secret(result)


async def test_api_key_doubles_as_bearer_like_supabase_js(fake: FakePostgrest, base_url: str) -> None:
    """With only api_key set, both `apikey` and `Authorization: Bearer <api_key>` are sent."""
    await run(base_url, required_tables=["user_settings"])
    assert (fake.received[0]["apikey"], fake.received[0]["authorization"]) == (API_KEY, f"Bearer {API_KEY}")
    assert "accept-profile" not in fake.received[0]


async def test_bearer_token_is_sent_separately_from_the_api_key(fake: FakePostgrest, base_url: str) -> None:
    """With bearer_token set, Authorization carries it while apikey keeps the API key."""
    fake.jwt = JWT
    result = await run(base_url, bearer=JWT, required_tables=["user_settings"])
    assert result.outcome == Outcome.OK, result.message
    assert (fake.received[0]["apikey"], fake.received[0]["authorization"]) == (API_KEY, f"Bearer {JWT}")
    assert_no_secret(result)


async def test_non_public_schema_goes_in_accept_profile(fake: FakePostgrest, base_url: str) -> None:
    """`auth.users` is requested as /rest/v1/users with Accept-Profile: auth."""
    result = await run(base_url, required_tables=["auth.users"])
    assert result.outcome == Outcome.OK, result.message
    assert (fake.received[0]["table"], fake.received[0]["accept-profile"]) == ("users", "auth")
    assert dict(result.tables) == {"auth.users": True}


@pytest.mark.parametrize("style", ["new", "old"])
@pytest.mark.parametrize("dropped", [["user_settings"], ["user_settings", "marketplace_listings"]])
async def test_missing_tables_new_and_old_forms(
    fake: FakePostgrest, base_url: str, style: Any, dropped: list[str]
) -> None:
    """404 PGRST205 (new) and 404 42P01 (old) both give table_missing naming every missing table."""
    fake.style = style
    fake.tables["public"] -= set(dropped)
    result = await run(base_url)
    assert result.outcome == Outcome.TABLE_MISSING
    assert result.details["missing_tables"] == dropped
    assert dict(result.tables) == {t: t not in dropped for t in SEED}
    for table in dropped:
        assert table in result.message
    assert ("PGRST205" if style == "new" else "42P01") in result.message
    assert result.status_code == 404


async def test_5xx_naming_a_missing_relation_is_table_missing(fake: FakePostgrest, base_url: str) -> None:
    """A 500 whose body says relation ... does not exist is the seed incident: table_missing, not server_error."""
    fake.status_override["user_settings"] = (500, pgrst_error("42P01", 'relation "user_settings" does not exist'))
    result = await run(base_url)
    assert result.outcome == Outcome.TABLE_MISSING
    assert result.details["missing_tables"] == ["user_settings"]


@pytest.mark.parametrize(
    ("gateway_key", "jwt", "api_key", "bearer", "reason"),
    [
        (API_KEY, JWT, API_KEY, None, "PGRST301"),
        (API_KEY, JWT, API_KEY, "not-the-jwt", "PGRST301"),
        (None, JWT, None, None, "PGRST302"),
        (API_KEY, None, None, None, "No API key found in request"),
        (API_KEY, None, "wrong-" + API_KEY[::-1], None, "Invalid API key"),
    ],
)
async def test_refused_credentials_are_unexpected_status_saying_why(
    fake: FakePostgrest, base_url: str, gateway_key: str | None, jwt: str | None, api_key: str | None,
    bearer: str | None, reason: str,
) -> None:
    """401 from PostgREST (PGRST301/302) or the gateway is unexpected_status whose message names the cause."""
    fake.gateway_key, fake.jwt = gateway_key, jwt
    result = await run(base_url, api_key=api_key, bearer=bearer)
    assert result.outcome == Outcome.UNEXPECTED_STATUS
    assert result.status_code == 401
    assert reason in result.message
    assert dict(result.tables) == {}
    assert_no_secret(result)
    if api_key is not None:
        assert api_key not in repr(result)


async def test_pgrst303_claims_failure_is_named(fake: FakePostgrest, base_url: str) -> None:
    """401 PGRST303 (JWT claims validation failed) is reported with its code."""
    fake.status_override["user_settings"] = (401, pgrst_error("PGRST303", "JWT claims validation failed"))
    result = await run(base_url)
    assert result.outcome == Outcome.UNEXPECTED_STATUS
    assert "PGRST303" in result.message


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (503, pgrst_error("PGRST001", "Database client error. Retrying the connection."), Outcome.SERVER_ERROR),
        (500, {"message": "upstream exploded"}, Outcome.SERVER_ERROR),
        (403, pgrst_error("42501", "permission denied for table user_settings"), Outcome.PERMISSION_DENIED),
        (500, pgrst_error("42P17", 'infinite recursion detected in policy for relation "user_settings"'),
         Outcome.POLICY_ERROR),
        (400, pgrst_error("PGRST100", "failed to parse select parameter"), Outcome.UNEXPECTED_STATUS),
    ],
)
async def test_other_errors(
    fake: FakePostgrest, base_url: str, status: int, body: dict[str, object], expected: Outcome
) -> None:
    """5xx is server_error, 42501 permission_denied, 42P17 policy_error, other 4xx unexpected_status."""
    fake.status_override["user_settings"] = (status, body)
    result = await run(base_url)
    assert result.outcome == expected
    assert result.status_code == status
    assert "user_settings" in result.message
    assert result.tables["affiliate_sales"] is True
    assert "user_settings" not in result.tables


async def test_unexposed_schema_is_unexpected_status(fake: FakePostgrest, base_url: str) -> None:
    """Accept-Profile naming a schema PostgREST does not expose: 406 PGRST106, unexpected_status."""
    result = await run(base_url, required_tables=["private.ledger"])
    assert result.outcome == Outcome.UNEXPECTED_STATUS
    assert "406" in result.message
    assert "PGRST106" in result.message


async def test_missing_table_outranks_a_server_error(fake: FakePostgrest, base_url: str) -> None:
    """One table missing and another answering 503: table_missing, and the 503 is still in the message."""
    fake.tables["public"].discard("user_wishlists")
    fake.status_override["affiliate_sales"] = (503, pgrst_error("PGRST001", "Database client error"))
    result = await run(base_url)
    assert result.outcome == Outcome.TABLE_MISSING
    assert "affiliate_sales: 503" in result.message


async def test_echoed_key_is_scrubbed_from_the_message(fake: FakePostgrest, base_url: str) -> None:
    """A server that echoes the key back in an error body does not make the key appear in the result."""
    fake.status_override["user_settings"] = (500, {"message": f"bad key {API_KEY}"})
    result = await run(base_url)
    assert result.outcome == Outcome.SERVER_ERROR
    assert "**********" in result.message
    assert_no_secret(result)
