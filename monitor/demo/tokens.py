"""The demo backend's tokens: Supabase-shaped HS256 access JWTs (PyJWT) and signed double-submit CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import jwt

AUDIENCE = "authenticated"
"""The `aud` claim of a Supabase access token for a signed-in user (and the only audience the demo accepts)."""

CSRF_COOKIE = "csrf_token"
"""The cookie `GET /api/auth/csrf-token` sets; a PUT must echo its value in the CSRF_HEADER header."""

CSRF_HEADER = "X-CSRF-Token"
"""The header a state-changing request carries the CSRF token in (double submit: it must equal the cookie)."""

FRONTEND_ORIGIN = "http://localhost:5173"
"""The demo frontend's origin: the demo's CORS settings allow it (with credentials, Authorization and the CSRF
header), and the demo config's anonymous GET check judges its answers as a browser there would."""


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


def verify_token(token: str, secret: str, *, accept_forged: bool = False) -> dict[str, Any]:
    """The claims of a valid token; raises TokenError (never saying the secret) for any other.

    Only HS256 is accepted (never `none`), `exp` is required and must be in the future, `aud` must name
    `authenticated`; PyJWT compares the signature in constant time.

    `accept_forged` is the `accept_forged_tokens` fault: the bug of a backend that, when verification fails,
    falls back to decoding the token without verifying it and trusts whatever `sub` it names. Only a token that
    is not a JWT at all is still refused.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], audience=AUDIENCE, options={"require": ["exp"]}
        )
    except jwt.PyJWTError as exc:
        if not accept_forged:
            raise TokenError(str(exc)) from None
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as unreadable:
            raise TokenError(str(unreadable)) from None
    return claims


def _csrf_mac(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()[:32]


def new_csrf_token(secret: str) -> str:
    """A fresh CSRF token: a random nonce and its HMAC under the backend's secret (a signed double-submit token)."""
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_csrf_mac(secret, nonce)}"


def csrf_valid(cookie: str | None, header: str | None, secret: str) -> bool:
    """Whether a request's CSRF header equals its CSRF cookie and the token was signed by this backend."""
    if not cookie or not header or not hmac.compare_digest(cookie, header):
        return False
    nonce, _, mac = cookie.partition(".")
    return bool(nonce) and hmac.compare_digest(mac, _csrf_mac(secret, nonce))


__all__ = [
    "AUDIENCE",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "TokenError",
    "csrf_valid",
    "demo_token",
    "new_csrf_token",
    "verify_token",
]
