"""Targets: the systems under watch, an HTTP base URL or a PostgreSQL DSN."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from monitor.core.config.base import Rate, Strict
from monitor.core.config.links import LinkTemplate


class Target(Strict):
    """A system under watch: an HTTP base URL (backend, PostgREST) or a PostgreSQL DSN."""

    base_url: str | None = None
    dsn: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    api_key: SecretStr | None = Field(default=None, description="PostgREST/Supabase `apikey` header")
    bearer_token: SecretStr | None = Field(default=None, description="`Authorization: Bearer` for PostgREST")
    verify_tls: bool = True
    runbook_url: LinkTemplate | None = Field(default=None, description="runbook link of this target's checks' alerts")
    ca_file: Path | None = None
    health_check: str | None = Field(
        default=None, description="a check of this target that its other checks depend on (one outage, one page)"
    )
    max_rate: Rate | None = Field(
        default=None, description="requests per second this target may receive from pam-monitor (written 40/m)"
    )
    proxy_url: str | None = Field(
        default=None,
        description="an http:// proxy every probe request to this target goes through (CONNECT for https); "
        "user:password@ in it is sent as Proxy-Authorization and redacted",
    )
    max_routes_per_minute: int | None = Field(
        default=None, ge=1,
        description="distinct routes pam-monitor may touch on this target in any minute (for IP-blocking middleware)",
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s?#]+", value):
            raise ValueError("must be an absolute http:// or https:// URL such as http://127.0.0.1:8000")
        if "@" in urlsplit(value).netloc:
            # Never echo the value: the part before @ is a password.
            raise ValueError(
                "has user:password@ in it; pam-monitor does not send URL credentials (they would share the "
                "Authorization header with the checks' own tokens and travel in every URL shown); set the target's "
                "headers: {Authorization: 'Basic <base64 of user:password>'} instead, which is kept secret"
            )
        return value.rstrip("/")

    @field_validator("proxy_url")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "http" or not parts.hostname or port == -1 or parts.path not in ("", "/"):
            raise ValueError("must be an http:// proxy URL such as http://proxy.internal:3128 "
                             "(user:password@ allowed); https:// and socks proxies are not supported")
        return value

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value().strip()
        if not raw:
            raise ValueError("is empty; set it to a PostgreSQL URL such as postgresql://user@host:5432/db")
        if not (raw.startswith(("postgresql://", "postgres://")) or "=" in raw):
            raise ValueError(
                "must be a PostgreSQL URL (postgresql://user:password@host:5432/db) or a key=value conninfo"
            )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        if (self.base_url is None) == (self.dsn is None):
            raise ValueError("set exactly one of base_url (HTTP target) or dsn (PostgreSQL target)")
        return self

    @property
    def is_http(self) -> bool:
        """Whether this target is reached over HTTP."""
        return self.base_url is not None

