"""HS256 JSON Web Tokens with the standard library, and the forged tokens the auth_contract prober sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from typing import Any

from monitor.core.config import ForgedToken

AUDIENCE = "authenticated"


class JwtError(ValueError):
    """A token that is malformed, wrongly signed, of the wrong algorithm, expired or for another audience."""


def b64url_encode(raw: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of b64url_encode; raises JwtError on bad input."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise JwtError("segment is not base64url") from exc


def _json_segment(value: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def _sign(signing_input: str, key: bytes) -> str:
    return b64url_encode(hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest())


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def encode_hs256(claims: dict[str, Any], secret: str | bytes) -> str:
    """A compact HS256 JWT for `claims` signed with `secret`."""
    signing_input = f"{_json_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_json_segment(claims)}"
    return f"{signing_input}.{_sign(signing_input, _key(secret))}"


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWT without checking anything; raises JwtError if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("not three dot-separated segments")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except ValueError as exc:
        raise JwtError("header or payload is not JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("header or payload is not a JSON object")
    return header, claims


def verify_hs256(
    token: str, secret: str | bytes, *, now: float | None = None, audience: str | None = AUDIENCE
) -> dict[str, Any]:
    """The claims of a valid HS256 token; raises JwtError saying why a token is refused.

    Only HS256 is accepted (never `none`), the signature is compared in constant time, `exp` must be in the
    future and, when `audience` is given, `aud` must name it.
    """
    header, claims = decode_unverified(token)
    if header.get("alg") != "HS256":
        raise JwtError(f"algorithm {str(header.get('alg'))[:16]!r} is not HS256")
    signing_input, _, signature = token.rpartition(".")
    if not hmac.compare_digest(_sign(signing_input, _key(secret)), signature):
        raise JwtError("signature does not match")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise JwtError("no numeric exp claim")
    if exp <= (time.time() if now is None else now):
        raise JwtError("token expired")
    if audience is not None:
        aud = claims.get("aud")
        if aud != audience and not (isinstance(aud, list) and audience in aud):
            raise JwtError("wrong audience")
    return claims


def supabase_claims(sub: str, *, iat: float, exp: float) -> dict[str, Any]:
    """Claims shaped like a Supabase access token for a signed-in user."""
    return {
        "sub": sub,
        "role": "authenticated",
        "aud": AUDIENCE,
        "iss": "supabase",
        "iat": int(iat),
        "exp": int(exp),
    }


def forged_token(variant: ForgedToken, *, secret: str | None = None, now: float | None = None) -> str:
    """A token that a correct auth layer must refuse.

    garbage: not a JWT at all; wrong_signature: well-formed HS256 signed with a random key; alg_none: header
    `alg: none` with an empty signature; expired: `exp` an hour ago, signed with `secret` when given (so only
    the expiry is wrong) or else a random key.
    """
    moment = time.time() if now is None else now
    sub = str(uuid.uuid4())
    fresh = supabase_claims(sub, iat=moment, exp=moment + 3600)
    if variant == "garbage":
        return "not-a-jwt." + secrets.token_urlsafe(24)
    if variant == "wrong_signature":
        return encode_hs256(fresh, secrets.token_bytes(32))
    if variant == "alg_none":
        return f"{_json_segment({'alg': 'none', 'typ': 'JWT'})}.{_json_segment(fresh)}."
    if variant == "expired":
        stale = supabase_claims(sub, iat=moment - 7200, exp=moment - 3600)
        return encode_hs256(stale, secret if secret is not None else secrets.token_bytes(32))
    raise ValueError(f"unknown forged token variant {variant!r}")
