"""The demo's HS256 tokens: Supabase-shaped claims, and every kind of bad token refused without naming the secret."""

from __future__ import annotations

import time

import jwt
import pytest

from monitor.demo.tokens import AUDIENCE, TokenError, demo_token, verify_token

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
