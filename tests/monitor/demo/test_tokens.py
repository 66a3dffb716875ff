"""The demo's tokens: Supabase-shaped HS256 claims, bad tokens refused without the secret, the forged fallback, CSRF."""

from __future__ import annotations

import time

import jwt
import pytest

from monitor.demo.tokens import AUDIENCE, TokenError, csrf_valid, demo_token, new_csrf_token, verify_token

SECRET = "demo-secret-that-is-long-enough-for-hs256-and-hs384"
OTHER = "another-secret-that-is-long-enough-too"


def claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "u1", "role": "authenticated", "aud": AUDIENCE, "iss": "supabase", "iat": now,
            "exp": now + 600, **changes}


def test_demo_token_carries_supabase_claims_and_verifies() -> None:
    """demo_token is an HS256 JWT with sub, role, aud, iss, iat and exp; verify_token returns those claims."""
    before = int(time.time())
    token = demo_token(SECRET, "u1", 600)
    after = int(time.time())
    assert {"alg": "HS256", "typ": "JWT"} == jwt.get_unverified_header(token)
    got = verify_token(token, SECRET)
    assert ({"sub", "role", "aud", "iss", "iat", "exp"}, "u1", "authenticated", "authenticated", "supabase") == (
        set(got), got["sub"], got["role"], got["aud"], got["iss"])
    assert before <= got["iat"] <= after
    assert before + 600 <= got["exp"] <= after + 600


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b.c",
        jwt.encode(claims(), OTHER, algorithm="HS256"),
        jwt.encode(claims(), None, algorithm="none"),
        jwt.encode(claims(), SECRET, algorithm="HS384"),
        jwt.encode(claims(exp=int(time.time()) - 1), SECRET, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims().items() if k != "exp"}, SECRET, algorithm="HS256"),
        jwt.encode(claims(aud="anon"), SECRET, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims().items() if k != "aud"}, SECRET, algorithm="HS256"),
    ],
    ids=["not-jwt", "not-base64-json", "wrong-secret", "alg-none", "hs384", "expired", "no-exp", "other-audience",
         "no-audience"],
)
def test_bad_tokens_are_refused_without_the_secret(token: str) -> None:
    """Malformed, wrongly signed, non-HS256, expired, exp-less and wrong-audience tokens raise TokenError."""
    with pytest.raises(TokenError) as refused:
        verify_token(token, SECRET)
    assert SECRET not in str(refused.value)


def test_audience_may_be_a_list_naming_authenticated() -> None:
    """A token whose aud is a list containing 'authenticated' is accepted, as RFC 7519 allows."""
    token = jwt.encode(claims(aud=["other", AUDIENCE]), SECRET, algorithm="HS256")
    assert "u1" == verify_token(token, SECRET)["sub"]


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(claims(sub="u2"), OTHER, algorithm="HS256"),
        jwt.encode(claims(sub="u2"), None, algorithm="none"),
        jwt.encode(claims(sub="u2", exp=int(time.time()) - 60), OTHER, algorithm="HS256"),
    ],
    ids=["wrong-secret", "alg-none", "expired-wrong-secret"],
)
def test_accept_forged_decodes_what_fails_verification(token: str) -> None:
    """With accept_forged (the accept_forged_tokens fault) a token that fails verification is decoded anyway."""
    with pytest.raises(TokenError):
        verify_token(token, SECRET)
    assert "u2" == verify_token(token, SECRET, accept_forged=True)["sub"]


def test_accept_forged_still_refuses_what_is_not_a_jwt() -> None:
    """Even the accept_forged fallback refuses a token it cannot decode at all."""
    with pytest.raises(TokenError):
        verify_token("not-a-jwt.at-all", SECRET, accept_forged=True)


def test_csrf_tokens_are_signed_double_submit_tokens() -> None:
    """csrf_valid holds only when cookie == header and the token was signed with this secret."""
    token = new_csrf_token(SECRET)
    assert (True, False, False, False, False) == (
        csrf_valid(token, token, SECRET),
        csrf_valid(token, new_csrf_token(SECRET), SECRET),
        csrf_valid(token, None, SECRET),
        csrf_valid(None, token, SECRET),
        csrf_valid(token, token, OTHER),
    )
    nonce, _, _ = token.partition(".")
    assert False is csrf_valid(f"{nonce}.{'0' * 32}", f"{nonce}.{'0' * 32}", SECRET)
