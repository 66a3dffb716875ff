"""The `auth_contract` prober against backends that behave like real FastAPI + Supabase ones (tests/support/
backends.py): each flaw found on a real backend gets its verdict, and the correct backend is `ok` under the same
check, so no verdict comes from the probe alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from monitor.core.config import AuthContractCheck
from monitor.core.results import Outcome
from tests.support.backends import (
    CSRF_TOKEN,
    FLAWS,
    SETTINGS_PATH,
    USER_ID,
    Flaw,
    RateLimited,
    settings_app,
    user_token,
)
from tests.support.servers import serve_asgi
from tests.support.targets import TIMING, DepsFactory, run_probe

IMPERSONATE = {"sub": "{user_id}"}
AUTH_BODIES = {"detail": {"one_of": ["Not authenticated", "Invalid authentication credentials"]}}


@pytest.fixture(scope="module")
def backend() -> Iterator[dict[Flaw, str]]:
    """One running backend per flaw: flaw -> base URL."""
    with serve_asgi(settings_app("none")) as none, serve_asgi(settings_app("unverified_fallback")) as fallback, \
            serve_asgi(settings_app("crash_on_invalid")) as crash, \
            serve_asgi(settings_app("routes_after_auth")) as routed, serve_asgi(settings_app("csrf_first")) as csrf, \
            serve_asgi(settings_app("malformed_400")) as malformed:
        urls: dict[Flaw, str] = {"none": none, "unverified_fallback": fallback, "crash_on_invalid": crash,
                                 "routes_after_auth": routed, "csrf_first": csrf, "malformed_400": malformed}
        assert set(FLAWS) == set(urls)
        yield urls


def settings_check(method: str = "GET", **fields: Any) -> AuthContractCheck:
    """An auth_contract check of the settings endpoint for USER_ID, as examples/pam-monitor.yaml writes it (its
    forged_claims only when given)."""
    return AuthContractCheck.model_validate({
        "name": "settings_unauth", "kind": "auth_contract", "target": "t", "method": method, "path": SETTINGS_PATH,
        "params": {"user_id": USER_ID}, **TIMING, **fields,
    })


async def test_the_stand_in_serves_its_own_user(backend: dict[Flaw, str], make_deps: DepsFactory) -> None:
    """The correct backend gives the user's settings to the user's real token and refuses another user's: the
    stand-in is a working backend, not a wall of 403s."""
    deps = make_deps(backend["none"])
    client = deps.client_for(deps.targets["t"])
    url = backend["none"] + SETTINGS_PATH.format(user_id=USER_ID)
    own = await client.get(url, headers={"Authorization": f"Bearer {user_token()}"})
    other = await client.get(url, headers={"Authorization": f"Bearer {user_token('someone-else')}"})
    assert (200, True, 403) == (own.status_code, own.json()["voice_enabled"], other.status_code)


async def test_unverified_decode_behind_an_owner_check_is_auth_bypass(
    backend: dict[Flaw, str], make_deps: DepsFactory
) -> None:
    """The real bypass: tokens are decoded without verification when verification fails, then the owner check
    compares `sub` with the path. Forged tokens impersonating the path's user read the settings."""
    result = await run_probe(settings_check(forged_claims=IMPERSONATE), make_deps(backend["unverified_fallback"]))
    assert (Outcome.AUTH_BYPASS, 403) == (result.outcome, result.status_code)
    assert ("GET /api/v1/users/{user_id}/settings: forged wrong_signature token got 200, forged alg_none "
            "token got 200, forged expired token got 200: "
            "expected 401|403; the endpoint answered without valid credentials") == result.message
    assert {"no_token": 403, "garbage": 401, "wrong_signature": 200, "alg_none": 200, "expired": 200} == dict(
        result.details)


async def test_without_forged_claims_the_owner_check_hides_the_bypass(
    backend: dict[Flaw, str], make_deps: DepsFactory
) -> None:
    """Why forged_claims exists: with a random `sub`, the flawed backend's owner check answers 403 and the plain
    check reads ok; a refusal-body expectation then shows the 403s came from the owner check, not the auth layer."""
    deps = make_deps(backend["unverified_fallback"])
    plain = await run_probe(settings_check(), deps)
    bodies = await run_probe(settings_check(expect={"json": AUTH_BODIES}), deps)
    assert (Outcome.OK, Outcome.INVALID_RESPONSE) == (plain.outcome, bodies.outcome)
    assert bodies.message.startswith(
        "GET /api/v1/users/{user_id}/settings: forged wrong_signature token got 403 but the body does not "
        "match expect.json (json field detail: expected "
        "one of 'Not authenticated', 'Invalid authentication credentials', got 'Not the owner of this resource'): ")
    assert bodies.message.endswith("an authorisation (owner) check answered, so the token was accepted as valid")


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_correct_backend_is_ok_with_impersonating_tokens(
    backend: dict[Flaw, str], make_deps: DepsFactory, method: str
) -> None:
    """A backend that verifies every token refuses the impersonating forgeries: ok, with body expectations too."""
    check = settings_check(method, forged_claims=IMPERSONATE, expect={"json": AUTH_BODIES})
    result = await run_probe(check, make_deps(backend["none"]))
    assert Outcome.OK == result.outcome, result.message
    assert {"no_token": 403, "garbage": 401, "wrong_signature": 401, "alg_none": 401, "expired": 401} == dict(
        result.details)


async def test_handler_crashing_on_invalid_tokens_is_auth_bypass(
    backend: dict[Flaw, str], make_deps: DepsFactory
) -> None:
    """No token gets 401, every invalid token a 500: the requests got past the auth layer into the handler."""
    result = await run_probe(settings_check(), make_deps(backend["crash_on_invalid"]))
    assert (Outcome.AUTH_BYPASS, 401) == (result.outcome, result.status_code)
    assert ("GET /api/v1/users/{user_id}/settings: forged garbage token got 500, forged wrong_signature "
            "token got 500, forged alg_none token got 500, "
            "forged expired token got 500 while no token got 401: the request got past the auth layer and crashed "
            "the handler") == result.message
    assert "Internal Server Error" == result.details["body_excerpt"]


@pytest.mark.parametrize(("method", "status"), [("GET", 404), ("PUT", 422)])
async def test_routing_or_validation_after_auth_is_auth_bypass(
    backend: dict[Flaw, str], make_deps: DepsFactory, method: str, status: int
) -> None:
    """Decodable forged tokens reach the handler: a user lookup answers 404, body validation 422."""
    result = await run_probe(settings_check(method), make_deps(backend["routes_after_auth"]))
    assert Outcome.AUTH_BYPASS == result.outcome
    assert result.message.startswith(
        f"{method} /api/v1/users/{{user_id}}/settings: forged wrong_signature token got {status}, forged "
        f"alg_none token got {status}, forged expired token got "
        f"{status} while no token got 403: the request got past the auth layer"), result.message


async def test_csrf_middleware_before_auth_is_invalid_response(
    backend: dict[Flaw, str], make_deps: DepsFactory
) -> None:
    """A PUT refused by a CSRF middleware for every request proves nothing about auth: invalid_response naming
    CSRF; with a body expectation, the sentence says the CSRF middleware answered."""
    deps = make_deps(backend["csrf_first"])
    plain = await run_probe(settings_check("PUT"), deps)
    expecting = await run_probe(settings_check("PUT", expect={"body_regex": "authenticat"}), deps)
    assert (Outcome.INVALID_RESPONSE, 403) == (plain.outcome, plain.status_code)
    assert ("PUT /api/v1/users/{user_id}/settings: no token got 403 '{\"detail\":\"CSRF token missing or "
            "invalid\"}', refused by a CSRF layer before the "
            "auth layer: this check proves nothing about auth; send the CSRF header in `headers` or set "
            "expect.body_regex") == plain.message
    assert Outcome.INVALID_RESPONSE == expecting.outcome
    assert expecting.message.endswith("; a CSRF middleware answered before the auth layer")


async def test_csrf_header_sent_reaches_the_auth_layer(backend: dict[Flaw, str], make_deps: DepsFactory) -> None:
    """The negative: with the CSRF header in `headers` (and for a GET, which the middleware lets through), the auth
    layer answers and the check is ok."""
    deps = make_deps(backend["csrf_first"])
    put = await run_probe(settings_check("PUT", headers={"X-CSRF-Token": CSRF_TOKEN}), deps)
    get = await run_probe(settings_check("GET"), deps)
    assert (Outcome.OK, Outcome.OK) == (put.outcome, get.outcome), (put.message, get.message)


G = "GET /api/v1/users/{user_id}/settings: "


async def test_400_for_a_malformed_header_is_not_auth_bypass(
    backend: dict[Flaw, str], make_deps: DepsFactory
) -> None:
    """A 400 for the garbage token (not `Bearer <JWT>`) is unexpected_status, never a critical auth_bypass."""
    result = await run_probe(settings_check(forged_claims=IMPERSONATE), make_deps(backend["malformed_400"]))
    assert (Outcome.UNEXPECTED_STATUS, 403) == (result.outcome, result.status_code)
    assert result.message.startswith(G + "expected 401|403, forged garbage token got 400 while no token got "
                                         "403: not the "
                                     "auth layer's refusal, but not judged a bypass either")
    assert {"no_token": 403, "garbage": 400, "wrong_signature": 401, "alg_none": 401, "expired": 401,
            "body_excerpt": '{"detail":"Malformed Authorization header"}'} == dict(result.details)


async def test_rate_limiter_is_rate_limited_with_its_wait(make_deps: DepsFactory) -> None:
    """Two requests per minute: of five, three get 429 with Retry-After; the run is rate_limited (inconclusive),
    retry_after is the wait asked for, and the sentence names the variants that were limited."""
    limiter = RateLimited(settings_app("none"), limit=2, window=60)
    with serve_asgi(limiter) as url:
        result = await run_probe(settings_check(), make_deps(url))
    assert Outcome.RATE_LIMITED == result.outcome
    assert result.retry_after is not None
    assert 50 <= result.retry_after <= 60, result.retry_after
    assert 3 == sum(1 for status in result.details.values() if status == 429), result.details
    assert result.message.startswith("GET /api/v1/users/{user_id}/settings: rate limited: "), result.message
    assert result.message.endswith(f", retry after {result.retry_after:g} s; nothing was learned about auth this run")


async def test_forged_tokens_limited_while_no_token_refused_is_not_a_bypass(make_deps: DepsFactory) -> None:
    """A limiter keyed on tokens answers 429 to every forged token while no token gets the auth layer's 403:
    rate_limited, not auth_bypass (the forged tokens were answered differently only by the limiter)."""
    limiter = RateLimited(settings_app("none"), limit=0, only_tokens=True, http_date=True)
    with serve_asgi(limiter) as url:
        result = await run_probe(settings_check(), make_deps(url))
    assert (Outcome.RATE_LIMITED, 403) == (result.outcome, result.status_code)
    assert {"no_token": 403, "garbage": 429, "wrong_signature": 429, "alg_none": 429, "expired": 429,
            "body_excerpt": '{"detail":"Rate limit exceeded: too many requests"}'} == dict(result.details)
    # An HTTP-date has one-second resolution: the wait is the window less what passed, give or take that second.
    assert result.retry_after is not None
    assert 55 <= result.retry_after <= 61, result.retry_after


async def test_a_bypass_is_definitive_even_when_another_request_was_limited(make_deps: DepsFactory) -> None:
    """One forged token reads the settings while the other is limited: auth_bypass, whatever the order."""
    limiter = RateLimited(settings_app("unverified_fallback"), limit=1, only_tokens=True)
    with serve_asgi(limiter) as url:
        check = settings_check(forged=["alg_none", "wrong_signature"], forged_claims=IMPERSONATE)
        result = await run_probe(check, make_deps(url))
    assert Outcome.AUTH_BYPASS == result.outcome, result.message
    assert [200, 429] == sorted([result.details["alg_none"], result.details["wrong_signature"]])
