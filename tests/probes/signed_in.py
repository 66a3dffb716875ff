"""Builders for the signed-in probe tests: the signed-in example, journeys, identities, Deps (fixtures: conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.core.clock import Clock, SystemClock
from monitor.core.config import Config, Identity, JourneyCheck, Target, load_config
from probes.deps import Deps
from tests.support.signed_in import JWT_SECRET
from tests.support.targets import TIMING

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "journeys.yaml"
EMAIL = "monitor@example.com"
PASSWORD = "pw-Monitor$ecret-9b1e"
USER_ID = "5d9c1c52-0000-4000-8000-0000000000aa"
CLAIMS_SUB = "current_setting('request.jwt.claims', true)::jsonb ->> 'sub'"
"""The JWT's sub as a Supabase row-level security policy reads it."""

SETTINGS = "/api/v1/users/{sub}/settings"
STEPS: list[dict[str, Any]] = [
    {"name": "csrf", "method": "GET", "path": "/api/auth/csrf-token", "expect": {"status": [200]},
     "capture": {"csrf": "json.csrf_token"}},
    {"name": "read", "method": "GET", "path": SETTINGS, "expect": {"status": [200]}},
    {"name": "write", "method": "PUT", "path": SETTINGS, "headers": {"X-CSRF-Token": "{csrf}"},
     "json": {"monitor_nonce": "{run_id}"}, "expect": {"status": [200]}},
    {"name": "read_back", "method": "GET", "path": SETTINGS,
     "expect": {"status": [200], "json": {"monitor_nonce": "{run_id}"}}},
]
"""The example journey's steps, as data a test can vary."""


def example_config(dsn: str = "postgresql://monitor@127.0.0.1:1/postgres") -> Config:
    """examples/journeys.yaml loaded as it stands, with its two variables set."""
    return load_config(EXAMPLE, environ={"SUPABASE_JWT_SECRET": JWT_SECRET, "DATABASE_URL": dsn})


def journey(steps: list[dict[str, Any]] | None = None, **fields: Any) -> JourneyCheck:
    """A journey on target `backend` as identity `monitor_user`, validated like a config file would be."""
    raw = {"name": "settings_journey", "kind": "journey", "target": "backend", "identity": "monitor_user",
           **TIMING, "steps": STEPS if steps is None else steps, **fields}
    return JourneyCheck.model_validate(raw)


def minted(sub: str, ttl: str = "5m", secret: str = JWT_SECRET) -> Identity:
    """A mint identity for `sub`."""
    return Identity.model_validate({"mint": {"secret": secret, "sub": sub, "ttl": ttl,
                                             "claims": {"role": "authenticated", "aud": "authenticated"}}})


def signed_in(auth_url: str, password: str = PASSWORD, api_key: str = "anon-key-test-0123456789") -> Identity:
    """A sign_in identity against the Auth stand-in at `auth_url`."""
    return Identity.model_validate({"sign_in": {"url": f"{auth_url}/auth/v1", "api_key": api_key, "email": EMAIL,
                                                "password": password}})


class Made:
    """Builds Deps (target `backend` at a URL, the given identities) and closes them all at the end."""

    def __init__(self) -> None:
        self._made: list[Deps] = []

    def __call__(self, backend_url: str, identities: dict[str, Identity], *, clock: Clock | None = None,
                 targets: dict[str, Target] | None = None) -> Deps:
        """Deps for these identities, with `backend` at `backend_url` plus `targets`."""
        deps = Deps(targets={"backend": Target(base_url=backend_url), **(targets or {})}, body_limit=1 << 20,
                    user_agent="pam-monitor-test", clock=clock or SystemClock(), identities=identities)
        self._made.append(deps)
        return deps

    async def aclose(self) -> None:
        """Close every Deps built here."""
        for deps in self._made:
            await deps.aclose()
