"""HS256 encode/verify against the RFC 7515 vector, and the forged tokens the auth_contract prober sends."""

from __future__ import annotations

import time

import pytest

from probes._jwt import (
    JwtError,
    b64url_decode,
    decode_unverified,
    encode_hs256,
    forged_token,
    supabase_claims,
    verify_hs256,
)

SECRET = "super-secret-jwt-token-with-at-least-32-characters"

RFC7515_KEY = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
RFC7515_TOKEN = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)


def test_rfc7515_vector_verifies() -> None:
    """The HS256 example of RFC 7515 appendix A.1 verifies with its key (so our HMAC/base64 are standard)."""
    claims = verify_hs256(RFC7515_TOKEN, b64url_decode(RFC7515_KEY), now=0, audience=None)
    assert {"iss": "joe", "exp": 1300819380, "http://example.com/is_root": True} == claims


def test_round_trip_and_refusals() -> None:
    """A token we sign verifies; another key, expiry, another audience or a tampered payload are refused."""
    now = time.time()
    claims = supabase_claims("u-1", iat=now, exp=now + 60)
    token = encode_hs256(claims, SECRET)
    assert claims == verify_hs256(token, SECRET)
    with pytest.raises(JwtError, match="signature"):
        verify_hs256(token, "another-secret")
    with pytest.raises(JwtError, match="expired"):
        verify_hs256(token, SECRET, now=now + 120)
    with pytest.raises(JwtError, match="audience"):
        verify_hs256(encode_hs256({**claims, "aud": "anon"}, SECRET), SECRET)
    head, _, sig = token.split(".")
    tampered = f"{head}.{encode_hs256({**claims, 'sub': 'u-2'}, SECRET).split('.')[1]}.{sig}"
    with pytest.raises(JwtError, match="signature"):
        verify_hs256(tampered, SECRET)


def test_forged_tokens_have_their_defect_and_nothing_else() -> None:
    """garbage is no JWT; wrong_signature and alg_none look right but fail; expired fails only on exp."""
    now = time.time()
    with pytest.raises(JwtError):
        decode_unverified(forged_token("garbage"))
    wrong = forged_token("wrong_signature", secret=SECRET)
    assert "HS256" == decode_unverified(wrong)[0]["alg"]
    with pytest.raises(JwtError, match="signature"):
        verify_hs256(wrong, SECRET)
    none = forged_token("alg_none")
    header, claims = decode_unverified(none)
    assert ("none", "authenticated", "authenticated") == (header["alg"], claims["role"], claims["aud"])
    assert none.endswith(".")
    with pytest.raises(JwtError, match="not HS256"):
        verify_hs256(none, SECRET)
    expired = forged_token("expired", secret=SECRET, now=now)
    with pytest.raises(JwtError, match="expired"):
        verify_hs256(expired, SECRET)
    assert "authenticated" == verify_hs256(expired, SECRET, now=now - 7200)["role"]
    with pytest.raises(JwtError, match="signature"):
        verify_hs256(forged_token("expired", now=now), SECRET)
