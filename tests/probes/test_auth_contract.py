"""The `auth_contract` prober against a real protected endpoint that misbehaves per token variant."""

from __future__ import annotations

from typing import Any

from monitor.core.config import AuthContractCheck
from monitor.core.results import Outcome
from probes import auth_contract
from probes._http import Failed, Fetched
from tests.support.targets import TIMING, DepsFactory, run_probe, valid_token

VARIANTS = ["no_token", "garbage", "wrong_signature", "alg_none", "expired"]


def make_check(path: str = "/auth", **fields: Any) -> AuthContractCheck:
    return AuthContractCheck.model_validate(
        {"name": "c", "kind": "auth_contract", "target": "t", "path": path, **TIMING, **fields}
    )


async def test_refusing_endpoint_is_ok(base_url: str, make_deps: DepsFactory) -> None:
    """403 without a token and 401 for every forged one is ok; details map each variant to its status."""
    result = await run_probe(make_check(), make_deps(base_url))
    assert Outcome.OK == result.outcome
    assert 403 == result.status_code
    assert {"no_token": 403, "garbage": 401, "wrong_signature": 401, "alg_none": 401, "expired": 401} == dict(
        result.details
    )
    assert result.message.startswith("all 5 refused: no token 403, forged garbage token 401")


async def test_open_endpoint_is_auth_bypass(base_url: str, make_deps: DepsFactory) -> None:
    """A 200 without credentials is auth_bypass naming the variant and the status."""
    result = await run_probe(make_check(query={"none": "200"}), make_deps(base_url))
    assert (Outcome.AUTH_BYPASS, 200) == (result.outcome, result.status_code)
    assert result.message.startswith("no token got 200: expected 401|403")


async def test_forged_token_accepted_is_auth_bypass(base_url: str, make_deps: DepsFactory) -> None:
    """A 2xx for a forged alg-none token while no token gets 403 is auth_bypass naming that variant."""
    result = await run_probe(make_check(query={"alg_none": "200"}), make_deps(base_url))
    assert (Outcome.AUTH_BYPASS, 403) == (result.outcome, result.status_code)
    assert result.message.startswith("forged alg_none token got 200")


async def test_forged_token_answered_differently_is_auth_bypass(base_url: str, make_deps: DepsFactory) -> None:
    """A forged token answered 404 (outside 401|403, unlike no token's 403) got past the auth layer."""
    result = await run_probe(make_check(query={"alg_none": "404"}), make_deps(base_url))
    assert Outcome.AUTH_BYPASS == result.outcome
    assert "forged alg_none token got 404, no token got 403: it got past the auth layer" == result.message


async def test_5xx_on_one_forged_variant_is_server_error(base_url: str, make_deps: DepsFactory) -> None:
    """A 500 for the garbage token alone is server_error naming that variant."""
    result = await run_probe(make_check(query={"garbage": "500"}), make_deps(base_url))
    assert (Outcome.SERVER_ERROR, 403) == (result.outcome, result.status_code)
    assert result.message.startswith("expected 401|403, forged garbage token got 500 after ")
    assert 500 == result.details["garbage"]


async def test_5xx_naming_a_relation_is_table_missing(base_url: str, make_deps: DepsFactory) -> None:
    """The seed incident: the 403 turned into a 500 whose body names the missing table."""
    query = {"none": "500", "body": '{"detail": "relation \\"user_settings\\" does not exist", "code": "42P01"}'}
    result = await run_probe(make_check(query=query), make_deps(base_url))
    assert (Outcome.TABLE_MISSING, 500) == (result.outcome, result.status_code)
    assert ["user_settings"] == result.details["tables_missing"]
    assert "no token got 500" in result.message
    assert "table user_settings does not exist (42P01)" in result.message


async def test_wrong_status_without_token_is_unexpected(base_url: str, make_deps: DepsFactory) -> None:
    """A 404 for everyone is unexpected_status (no 2xx, no 5xx, no difference between variants)."""
    query = dict.fromkeys(["none", "garbage", "wrong_signature", "alg_none", "expired"], "404")
    result = await run_probe(make_check(query=query), make_deps(base_url))
    assert (Outcome.UNEXPECTED_STATUS, 404) == (result.outcome, result.status_code)


async def test_body_regex(base_url: str, make_deps: DepsFactory) -> None:
    """expect.body_regex must match every refusal: a regex all bodies match is ok, another is invalid_response."""
    deps = make_deps(base_url)
    good = await run_probe(make_check(expect={"body_regex": "authenticat"}), deps)
    bad = await run_probe(make_check(expect={"body_regex": "^Forbidden$"}), deps)
    assert (Outcome.OK, Outcome.INVALID_RESPONSE) == (good.outcome, bad.outcome)
    assert bad.message.startswith("no token got 403 but the body does not match regex")


def test_requests_that_all_failed_are_attributed_to_the_no_token_request() -> None:
    """When no request got an answer, the outcome and sentence are the no-token request's, and details give
    each variant's failure (its outcome, or the status that arrived before the failure)."""
    answers: dict[str, Fetched | Failed] = {
        name: Failed(Outcome.TIMEOUT, "timed out after 0.30 s waiting for the response", 0.3) for name in VARIANTS
    }
    answers["garbage"] = Failed(Outcome.CONNECTION_ERROR, "server closed the connection", 0.1, status=200)
    result = auth_contract.judge(make_check(), answers)
    assert (Outcome.TIMEOUT, None) == (result.outcome, result.status_code)
    assert "no token: timed out after 0.30 s waiting for the response" == result.message
    assert {**dict.fromkeys(VARIANTS, "timeout"), "garbage": 200} == dict(result.details)


async def test_configured_authorization_is_not_sent(base_url: str, make_deps: DepsFactory) -> None:
    """A valid Authorization header configured on the target is dropped, so the no-token request has none."""
    deps = make_deps(base_url, headers={"Authorization": f"Bearer {valid_token()}"})
    result = await run_probe(make_check(forged=["garbage"]), deps)
    assert Outcome.OK == result.outcome
    assert {"no_token": 403, "garbage": 401} == dict(result.details)


async def test_no_token_or_secret_in_the_result(base_url: str, make_deps: DepsFactory) -> None:
    """Neither a forged token nor the configured jwt_secret appears in message or details."""
    check = make_check(query={"expired": "200"}, jwt_secret="sekrit-jwt-secret-value")
    result = await run_probe(check, make_deps(base_url))
    text = result.message + repr(dict(result.details))
    assert Outcome.AUTH_BYPASS == result.outcome
    assert "forged expired token got 200" in result.message
    for leak in ("sekrit", "eyJ", "Bearer", "not-a-jwt"):
        assert leak not in text
