"""Identities: who the signed-in checks act as, a token minted with the project's JWT secret or a real sign-in."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator

from monitor.core.config.base import Duration, Strict

MIN_TTL = 1.0
MAX_TTL = 24 * 3600.0
_RESERVED_CLAIMS = ("sub", "iat", "exp")


def _not_blank(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise ValueError("is empty; set it (from the environment: \"${VAR}\", or a file: \"${file:/path}\")")
    return value


class Mint(Strict):
    """A Supabase-shaped access token signed (HS256) with the project's JWT secret, re-minted before it expires.

    Claims: `sub`, `role` and `aud` (both `authenticated` unless `claims` says otherwise), `iat`, `exp` = now + ttl,
    plus `claims`.
    """

    secret: SecretStr = Field(description="the project's JWT secret (Supabase: Settings > API > JWT secret)")
    sub: Annotated[str, Field(min_length=1, max_length=200)] = Field(description="the monitoring user's id")
    ttl: Duration = Field(default=300.0, description="lifetime of each minted token")
    claims: dict[str, Any] = Field(default_factory=dict, description="extra claims, e.g. {role: authenticated}")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        return _not_blank(value)

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: float) -> float:
        if not MIN_TTL <= value <= MAX_TTL:
            raise ValueError("must be between 1s and 24h (Supabase's default is 1h)")
        return value

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = [name for name in _RESERVED_CLAIMS if name in value]
        if clash:
            raise ValueError(
                f"must not set {', '.join(clash)}: sub comes from mint.sub, iat and exp from the time and ttl"
            )
        return value


class SignIn(Strict):
    """A real sign-in with Supabase Auth's password grant, refreshed with the refresh token before it expires."""

    url: str = Field(description="the Auth base URL, e.g. https://<ref>.supabase.co/auth/v1")
    api_key: SecretStr = Field(description="the project's anon key, sent as the `apikey` header")
    email: Annotated[str, Field(min_length=3, max_length=320)]
    password: SecretStr

    @field_validator("api_key", "password")
    @classmethod
    def _secrets(cls, value: SecretStr) -> SecretStr:
        return _not_blank(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s?#]+", value):
            raise ValueError("must be an absolute http:// or https:// URL such as https://<ref>.supabase.co/auth/v1")
        return value.rstrip("/")


class Identity(Strict):
    """A dedicated monitoring user; exactly one of `mint` or `sign_in` says how its access token is obtained."""

    mint: Mint | None = None
    sign_in: SignIn | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Identity:
        if (self.mint is None) == (self.sign_in is None):
            raise ValueError(
                "set exactly one of mint (a token signed with the project's JWT secret) or sign_in "
                "(Supabase Auth email + password)"
            )
        return self

    @property
    def label(self) -> str:
        """How results name the identity's user: its `sub` when minted, its email when signed in."""
        if self.mint is not None:
            return self.mint.sub
        assert self.sign_in is not None
        return self.sign_in.email
