"""The demo backend's access tokens: Supabase-shaped HS256 JWTs, signed and verified with PyJWT."""

from __future__ import annotations

import time
from typing import Any

import jwt

AUDIENCE = "authenticated"
"""The `aud` claim of a Supabase access token for a signed-in user (and the only audience the demo accepts)."""


class TokenError(ValueError):
    """A token the demo refuses: malformed, wrongly signed, not HS256, expired or for another audience."""


def demo_token(secret: str, sub: str, ttl_s: float) -> str:
    """A valid Supabase-like HS256 access token for user `sub`, expiring `ttl_s` seconds from now."""
    now = time.time()
    claims = {
        "sub": sub,
        "role": "authenticated",
        "aud": AUDIENCE,
        "iss": "supabase",
        "iat": int(now),
        "exp": int(now + ttl_s),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(token: str, secret: str) -> dict[str, Any]:
    """The claims of a valid token; raises TokenError (never saying the secret) for any other.

    Only HS256 is accepted (never `none`), `exp` is required and must be in the future, `aud` must name
    `authenticated`; PyJWT compares the signature in constant time.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], audience=AUDIENCE, options={"require": ["exp"]}
        )
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from None
    return claims


__all__ = ["AUDIENCE", "TokenError", "demo_token", "verify_token"]
