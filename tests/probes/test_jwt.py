"""The forged tokens the auth_contract prober sends: each is refused by a verifying library for its one defect."""

from __future__ import annotations

import time

import jwt
import pytest

from monitor.core.config import ForgedToken
from probes._jwt import forged_token

SECRET = "super-secret-jwt-token-with-at-least-32-characters"


def verify(token: str, secret: str = SECRET, *, signature: bool = True, expiry: bool = True) -> dict[str, object]:
    """What a correct backend does: HS256 only, its own secret, audience `authenticated`, an unexpired `exp`
    (either check can be switched off to show a token fails on nothing else)."""
    claims: dict[str, object] = jwt.decode(
        token, secret, algorithms=["HS256"], audience="authenticated",
        options={"require": ["exp"], "verify_signature": signature, "verify_exp": expiry},
    )
    return claims


def test_garbage_is_not_a_jwt() -> None:
    """garbage cannot even be decoded."""
    with pytest.raises(jwt.DecodeError, match="segments"):
        jwt.get_unverified_header(forged_token("garbage"))


def test_wrong_signature_is_well_formed_but_signed_with_another_key() -> None:
    """wrong_signature is a well-formed HS256 token with Supabase claims; only its signature is wrong."""
    token = forged_token("wrong_signature", secret=SECRET)
    assert "HS256" == jwt.get_unverified_header(token)["alg"]
    with pytest.raises(jwt.InvalidSignatureError):
        verify(token)
    assert "authenticated" == verify(token, signature=False)["role"]


def test_alg_none_has_no_signature() -> None:
    """alg_none says `alg: none`, carries Supabase claims and an empty signature; HS256-only verification refuses
    it for its algorithm."""
    token = forged_token("alg_none")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert ("none", "authenticated", "authenticated") == (
        jwt.get_unverified_header(token)["alg"], claims["role"], claims["aud"])
    assert token.endswith(".")
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(token)


def test_expired_with_the_secret_fails_only_on_expiry() -> None:
    """expired, signed with the real secret, is refused for its expiry and nothing else."""
    token = forged_token("expired", secret=SECRET, now=time.time())
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(token)
    assert "authenticated" == verify(token, expiry=False)["role"]


def test_expired_without_the_secret_is_signed_with_a_random_key() -> None:
    """Without the secret, expired is signed with a random key, so its signature is refused too."""
    with pytest.raises(jwt.InvalidSignatureError):
        verify(forged_token("expired", now=time.time()))


def test_a_short_secret_signs_without_a_warning() -> None:
    """The backend's secret may be shorter than RFC 7518's 32 bytes: the expired token is signed with it all the
    same and no InsecureKeyLengthWarning escapes (pytest turns warnings into errors)."""
    token = forged_token("expired", secret="short-secret", now=time.time())
    with pytest.warns(jwt.InsecureKeyLengthWarning), pytest.raises(jwt.ExpiredSignatureError):
        verify(token, secret="short-secret")


@pytest.mark.parametrize("variant", ["wrong_signature", "alg_none", "expired"])
def test_forged_claims_go_into_every_token_but_keep_its_defect(variant: ForgedToken) -> None:
    """Claims given (an auth_contract check's filled forged_claims) replace or add to Supabase's shape in every
    JWT variant; iat and exp stay the variant's own, so the expired token is still expired and the others are not."""
    now = time.time()
    claims = {"sub": "7c0f3a8e-0000-4000-8000-000000000001", "role": "service_role", "app_metadata": {"tier": "pro"},
              "exp": now + 10 ** 6, "iat": 0}
    token = forged_token(variant, secret=SECRET, now=now, claims=claims)
    seen = jwt.decode(token, options={"verify_signature": False})
    assert ("7c0f3a8e-0000-4000-8000-000000000001", "service_role", {"tier": "pro"}, "authenticated", "supabase") == (
        seen["sub"], seen["role"], seen["app_metadata"], seen["aud"], seen["iss"])
    assert (variant == "expired") == (seen["exp"] < now)
    assert seen["iat"] > 0
