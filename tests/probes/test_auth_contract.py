"""The `auth_contract` prober against a protected endpoint that misbehaves per token variant on demand, and its
judgement table row by row. Backends that behave like real ones (an owner check over unverified tokens, a CSRF
middleware, a rate limiter...) are in test_auth_backends.py."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.core.config import AuthContractCheck
from monitor.core.results import Outcome
from probes import auth_contract
from probes._http import Failed, Fetched
from probes.deps import Deps
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
    assert result.message.startswith("GET /auth: all 5 refused: no token 403, forged garbage token 401")


async def test_open_endpoint_is_auth_bypass(base_url: str, make_deps: DepsFactory) -> None:
    """A 200 without credentials is auth_bypass naming the variant and the status."""
    result = await run_probe(make_check(query={"none": "200"}), make_deps(base_url))
    assert (Outcome.AUTH_BYPASS, 200) == (result.outcome, result.status_code)
    assert result.message.startswith("GET /auth: no token got 200: expected 401|403")


async def test_forged_token_accepted_is_auth_bypass(base_url: str, make_deps: DepsFactory) -> None:
    """A 2xx for a forged alg-none token while no token gets 403 is auth_bypass naming that variant."""
    result = await run_probe(make_check(query={"alg_none": "200"}), make_deps(base_url))
    assert (Outcome.AUTH_BYPASS, 403) == (result.outcome, result.status_code)
    assert result.message.startswith("GET /auth: forged alg_none token got 200")


async def test_forged_token_routed_is_auth_bypass(base_url: str, make_deps: DepsFactory) -> None:
    """A forged token answered 404 while no token got 403: only a request past the auth layer is routed."""
    result = await run_probe(make_check(query={"alg_none": "404"}), make_deps(base_url))
    assert Outcome.AUTH_BYPASS == result.outcome
    assert ("GET /auth: forged alg_none token got 404 while no token got 403: the request got past the auth "
            "layer (only a "
            "request past it reaches routing or validation of the path and body)") == result.message


async def test_5xx_on_one_forged_variant_is_auth_bypass(base_url: str, make_deps: DepsFactory) -> None:
    """A 500 for the garbage token while no token got 403 is auth_bypass naming that variant."""
    result = await run_probe(make_check(query={"garbage": "500"}), make_deps(base_url))
    assert (Outcome.AUTH_BYPASS, 403) == (result.outcome, result.status_code)
    assert ("GET /auth: forged garbage token got 500 while no token got 403: the request got past the auth "
            "layer and crashed "
            "the handler") == result.message
    assert 500 == result.details["garbage"]


async def test_5xx_without_token_is_server_error(base_url: str, make_deps: DepsFactory) -> None:
    """A 500 for every request is server_error listing them, no token first."""
    query = dict.fromkeys(["none", "garbage", "wrong_signature", "alg_none", "expired"], "500")
    result = await run_probe(make_check(query=query, forged=["garbage"]), make_deps(base_url))
    assert (Outcome.SERVER_ERROR, 500) == (result.outcome, result.status_code)
    assert result.message.startswith("GET /auth: expected 401|403, no token got 500, forged garbage token "
                                     "got 500 after ")


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
    assert bad.message.startswith("GET /auth: no token got 403 but the body does not match regex '^Forbidden$': ")


def test_requests_that_all_failed_are_attributed_to_the_no_token_request() -> None:
    """When no request got an answer, the outcome and sentence are the no-token request's, and details give
    each variant's failure (its outcome, or the status that arrived before the failure)."""
    answers: dict[str, Fetched | Failed] = {
        name: Failed(Outcome.TIMEOUT, "timed out after 0.30 s waiting for the response", 0.3) for name in VARIANTS
    }
    answers["garbage"] = Failed(Outcome.CONNECTION_ERROR, "server closed the connection", 0.1, status=200)
    result = auth_contract.judge(make_check(), answers)
    assert (Outcome.TIMEOUT, None) == (result.outcome, result.status_code)
    assert "GET /auth: no token: timed out after 0.30 s waiting for the response" == result.message
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


# ---------------------------------------------------------------------------------------------- the judgement table


def answer(status: int, body: str = "", *, retry_after: str | None = None) -> Fetched:
    """A response as fetch() returns it; `retry_after` is the raw header (its seconds parsed when numeric)."""
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    wait = float(retry_after) if retry_after is not None and retry_after.isdigit() else None
    return Fetched(status, headers, body.encode(), False, 0.01, 1 << 20, wait)


def page(status: int, body: str, *, media: str = "text/html", scheme: str | None = None) -> Fetched:
    """A non-JSON refusal (a WAF's page, a gateway's challenge) as fetch() returns it."""
    headers = [(b"content-type", media.encode())]
    if scheme is not None:
        headers.append((b"www-authenticate", scheme.encode()))
    return Fetched(status, headers, body.encode(), False, 0.01, 1 << 20)


BLOCKED = '{"message": "Your IP address has been blocked due to security violations"}'
NOT_AUTH = '{"detail": "Not authenticated"}'
INVALID = '{"detail": "Invalid authentication credentials"}'
REFUSED: dict[str, Fetched | Failed] = {"no_token": answer(403, NOT_AUTH),
                                        **{name: answer(401, INVALID) for name in VARIANTS[1:]}}
TIMED_OUT = Failed(Outcome.TIMEOUT, "timed out after 3.00 s waiting for the response", 3.0)
CLOSED = Failed(Outcome.CONNECTION_ERROR, "server closed the connection before any response", 0.01)

# (row, answers that differ from REFUSED, check fields, outcome, start of the sentence, retry_after)
JUDGEMENT_CASES: list[tuple[str, dict[str, Fetched | Failed], dict[str, Any], Outcome, str, float | None]] = [
    ("1 2xx without token", {"no_token": answer(200, "{}")}, {}, Outcome.AUTH_BYPASS,
     "no token got 200: expected 401|403; the endpoint answered without valid credentials", None),
    ("1 2xx beats a 429", {"alg_none": answer(200, "{}"), "expired": answer(429, retry_after="30")}, {},
     Outcome.AUTH_BYPASS, "forged alg_none token got 200: expected 401|403", 30.0),
    ("1b an IP blocker's JSON 403", {name: answer(403, BLOCKED) for name in VARIANTS}, {},
     Outcome.INVALID_RESPONSE, "no token got 403, forged garbage token got 403", None),
    ("1b a blocker's 429 is no rate limit", {"no_token": answer(429, BLOCKED, retry_after="30")}, {},
     Outcome.INVALID_RESPONSE, "no token got 429 ", 30.0),
    ("2 a forged token limited", {"expired": answer(429, retry_after="30")}, {}, Outcome.RATE_LIMITED,
     "rate limited: forged expired token got 429, retry after 30 s; nothing was learned about auth this run", 30.0),
    ("2 largest wait of 429 and 503", {"garbage": answer(503, retry_after="10"), "expired": answer(429,
     retry_after="45")}, {}, Outcome.RATE_LIMITED,
     "rate limited: forged garbage token got 503, forged expired token got 429, retry after 45 s", 45.0),
    ("2 429 without Retry-After", {"no_token": answer(429)}, {}, Outcome.RATE_LIMITED,
     "rate limited: no token got 429, no usable Retry-After", None),
    ("2 limited beats a 5xx", {"no_token": answer(429, retry_after="5"), "garbage": answer(500)}, {},
     Outcome.RATE_LIMITED, "rate limited: no token got 429, retry after 5 s", 5.0),
    ("3 no token 5xx", {"no_token": answer(500, "boom")}, {}, Outcome.SERVER_ERROR,
     "expected 401|403, no token got 500 after 0.01 s", None),
    ("3 503 without Retry-After is not rate limited", {"no_token": answer(503)}, {}, Outcome.SERVER_ERROR,
     "expected 401|403, no token got 503 after", None),
    ("3 a missing relation", {"no_token": answer(500, '{"code": "42P01", "message": "relation \\"user_settings\\" '
     'does not exist"}')}, {}, Outcome.TABLE_MISSING,
     "expected 401|403, no token got 500 after 0.01 s: table user_settings does not exist (42P01)", None),
    ("4 forged 5xx", {"alg_none": answer(500)}, {}, Outcome.AUTH_BYPASS,
     "forged alg_none token got 500 while no token got 403: the request got past the auth layer and crashed the "
     "handler", None),
    ("4 forged 5xx beats a transport failure", {"alg_none": answer(502), "garbage": TIMED_OUT}, {},
     Outcome.AUTH_BYPASS, "forged alg_none token got 502 while no token got 403", None),
    ("4 needs no token refused", {"no_token": answer(404), "alg_none": answer(500)}, {}, Outcome.UNEXPECTED_STATUS,
     "expected 401|403, no token got 404", None),
    ("5 forged 404", {"expired": answer(404, '{"detail": "User settings not found"}')}, {}, Outcome.AUTH_BYPASS,
     "forged expired token got 404 while no token got 403: the request got past the auth layer", None),
    ("5 forged 422", {"wrong_signature": answer(422)}, {}, Outcome.AUTH_BYPASS,
     "forged wrong_signature token got 422 while no token got 403", None),
    ("6 no token timed out first", {"no_token": TIMED_OUT, "garbage": CLOSED}, {}, Outcome.TIMEOUT,
     "no token: timed out after 3.00 s waiting for the response", None),
    ("6 a forged request failed", {"garbage": CLOSED}, {}, Outcome.CONNECTION_ERROR,
     "forged garbage token: server closed the connection before any response", None),
    ("7 no token not refused", {"no_token": answer(401, INVALID)}, {"expect": {"status": [403]}},
     Outcome.UNEXPECTED_STATUS, "expected 403, no token got 401 after 0.01 s", None),
    ("7 a CSRF 400 is named", {"no_token": answer(400, '{"detail": "CSRF token missing"}')}, {},
     Outcome.UNEXPECTED_STATUS, "expected 401|403, no token got 400 after 0.01 s; a CSRF middleware answered before "
     "the auth layer", None),
    ("8 forged 400 is no bypass", {"garbage": answer(400, '{"detail": "Malformed Authorization header"}')}, {},
     Outcome.UNEXPECTED_STATUS, "expected 401|403, forged garbage token got 400 while no token got 403: not the auth "
     "layer's refusal, but not judged a bypass either (a 400 for a malformed header is common)", None),
    ("8 forged 405", {"alg_none": answer(405)}, {}, Outcome.UNEXPECTED_STATUS,
     "expected 401|403, forged alg_none token got 405 while no token got 403", None),
    ("9 regex misses an owner check", {"alg_none": answer(403, '{"detail": "Not the owner of this resource"}')},
     {"expect": {"body_regex": "authenticat"}}, Outcome.INVALID_RESPONSE,
     "forged alg_none token got 403 but the body does not match regex 'authenticat': "
     "'{\"detail\": \"Not the owner of this resource\"}'; an authorisation (owner) check answered, so the token "
     "was accepted as valid", None),
    ("9 json misses a rate limiter", {"no_token": answer(403, '{"detail": "Rate limit exceeded"}')},
     {"expect": {"json": {"detail": {"one_of": ["Not authenticated", "Invalid authentication credentials"]}}}},
     Outcome.INVALID_RESPONSE, "no token got 403 but the body does not match expect.json (json field detail: "
     "expected one of 'Not authenticated', 'Invalid authentication credentials', got 'Rate limit exceeded'): "
     "'{\"detail\": \"Rate limit exceeded\"}'; a rate limiter answered, not the auth layer", None),
    ("9 json on a body that is not JSON", {"garbage": answer(401, "Unauthorized")},
     {"expect": {"json": {"detail": {"exists": True}}}}, Outcome.INVALID_RESPONSE,
     "forged garbage token got 401 but the body does not match expect.json (the body is not JSON "
     "(application/json, 12 bytes)): 'Unauthorized'", None),
    ("10 CSRF refusal", {name: answer(403, '{"detail": "CSRF token missing"}') for name in VARIANTS}, {},
     Outcome.INVALID_RESPONSE, "no token got 403 '{\"detail\": \"CSRF token missing\"}', refused by a CSRF layer "
     "before the auth layer: this check proves nothing about auth; send the CSRF header in `headers` or set "
     "expect.body_regex", None),
    ("10 a body regex the CSRF refusal matches is trusted", {"no_token": answer(403, '{"detail": "CSRF missing"}')},
     {"expect": {"body_regex": "CSRF|authenticat|Invalid"}}, Outcome.OK, "all 5 refused: no token 403", None),
    ("10b a WAF page where the auth layer declared JSON", {"no_token": page(403, "<html>Forbidden</html>")},
     {"expect": {"refusal": {"media_type": "application/json", "keys": ["detail"]}}}, Outcome.INVALID_RESPONSE,
     "no token refused with 403 text/html, but this endpoint's auth layer refuses with application/json "
     "keys=[detail] (declared in expect.refusal): an authorisation (owner) check answered", None),
    ("10b a gateway's Basic challenge", {"garbage": page(401, "Unauthorized", scheme="Basic realm=\"gw\"")},
     {"expect": {"refusal": {"media_type": "application/json", "keys": ["detail"]}}}, Outcome.INVALID_RESPONSE,
     "forged garbage token refused with 401 text/html WWW-Authenticate: Basic, but", None),
    ("11 all refused", {}, {"expect": {"json": {"detail": {"regex": "^(Not authenticated|Invalid)"}}}}, Outcome.OK,
     "all 5 refused: no token 403, forged garbage token 401, forged wrong_signature token 401, forged alg_none "
     "token 401, forged expired token 401 (slowest 0.01 s)", None),
]


@pytest.mark.parametrize(("row", "changed", "fields", "outcome", "says", "retry_after"), JUDGEMENT_CASES,
                         ids=[case[0] for case in JUDGEMENT_CASES])
def test_judgement_table(row: str, changed: dict[str, Fetched | Failed], fields: dict[str, Any], outcome: Outcome,
                         says: str, retry_after: float | None) -> None:
    """Each row of the judgement (probes/auth_contract.py) decides as documented, with its sentence, including
    which row wins when two hold; retry_after is the largest wait a limited answer asked for."""
    check = make_check(**fields)
    learner = auth_contract.learner_for(check, Deps(targets={}, body_limit=1, user_agent="t"))
    result = auth_contract.judge(check, {**REFUSED, **changed}, learner)
    assert (outcome, retry_after) == (result.outcome, result.retry_after), result.message
    assert result.message.startswith("GET /auth: " + says), result.message


def test_every_row_of_the_table_is_tested() -> None:
    """The judgement has twelve rows before `ok`, and the table above has a case for each of them and for ok."""
    assert 11 == len(auth_contract.JUDGEMENT)  # rows 9 and 10 are one function
    assert {str(n) for n in range(1, 12)} | {"1b", "10b"} == {case[0].split()[0] for case in JUDGEMENT_CASES}
