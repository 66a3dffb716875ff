"""The forged tokens the auth_contract prober sends, made with PyJWT; each has exactly one defect."""

from __future__ import annotations

import secrets
import time
import uuid
import warnings
from collections.abc import Mapping
from typing import Any

import jwt

from monitor.core.config import ForgedToken

AUDIENCE = "authenticated"


def supabase_claims(sub: str, *, iat: float, exp: float) -> dict[str, Any]:
    """Claims shaped like a Supabase access token for a signed-in user."""
    return {"sub": sub, "role": "authenticated", "aud": AUDIENCE, "iss": "supabase", "iat": int(iat), "exp": int(exp)}


def encode_hs256(claims: dict[str, Any], secret: str | bytes) -> str:
    """A compact HS256 JWT for `claims` signed with `secret`."""
    with warnings.catch_warnings():
        # The backend's secret may be shorter than RFC 7518's 32 bytes; the token must be signed with it all the
        # same, and a warning on every run would say nothing the operator can act on here.
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm="HS256")


def forged_token(
    variant: ForgedToken,
    *,
    secret: str | None = None,
    now: float | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A token that a correct auth layer must refuse.

    garbage: not a JWT at all; wrong_signature: well-formed HS256 signed with a random key; alg_none: header
    `alg: none` with an empty signature; expired: `exp` an hour ago, signed with `secret` when given (so only
    the expiry is wrong) or else a random key. The claims are Supabase's shape (a random `sub`), overlaid with
    `claims` (an auth_contract check's filled `forged_claims`, e.g. the path's user id as `sub`); `iat` and
    `exp` are always the variant's own.
    """
    moment = time.time() if now is None else now
    base = {"sub": str(uuid.uuid4()), **(claims or {})}

    def shaped(iat: float, exp: float) -> dict[str, Any]:
        return {**supabase_claims(str(base["sub"]), iat=iat, exp=exp), **base, "iat": int(iat), "exp": int(exp)}

    fresh = shaped(moment, moment + 3600)
    if variant == "garbage":
        return "not-a-jwt." + secrets.token_urlsafe(24)
    if variant == "wrong_signature":
        return encode_hs256(fresh, secrets.token_bytes(32))
    if variant == "alg_none":
        # PyJWT takes "" as "no key" for alg none; None is not in its key type once cryptography is installed.
        return jwt.encode(fresh, "", algorithm="none")
    if variant == "expired":
        stale = shaped(moment - 7200, moment - 3600)
        return encode_hs256(stale, secret if secret is not None else secrets.token_bytes(32))
    raise ValueError(f"unknown forged token variant {variant!r}")

