"""Shared pieces of the demo app tests: the app on a memory store, signed-in and forged requests."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import jwt

from monitor.demo.store import MemorySettingsStore
from monitor.demo.tokens import CSRF_HEADER, demo_token

SECRET = "demo-secret-that-is-long-enough-for-hs256"
USER = "11111111-2222-3333-4444-555555555555"
SETTINGS = f"/api/v1/users/{USER}/settings"


class RecordingStore(MemorySettingsStore):
    """A MemorySettingsStore that remembers which table operations the app asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def drop_table(self) -> None:
        """Record, then drop."""
        self.calls.append("drop_table")
        await super().drop_table()

    async def restore(self) -> None:
        """Record, then restore."""
        self.calls.append("restore")
        await super().restore()


async def set_fault(base_url: str, name: str) -> None:
    """Switch a fault on from async code."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5, trust_env=False) as c:
        (await c.post(f"/_faults/{name}")).raise_for_status()


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a bearer token."""
    return {"Authorization": f"Bearer {token}"}


def valid() -> dict[str, str]:
    """The Authorization header of a valid token for USER."""
    return bearer(demo_token(SECRET, USER, 600))


def signed_in_put(client: httpx.Client, path: str, body: Any, token: dict[str, str] | None = None) -> httpx.Response:
    """A PUT the way the settings page sends it: fetch the CSRF token (its cookie lands in the client), echo it."""
    csrf = client.get("/api/auth/csrf-token").json()["csrf_token"]
    return client.put(path, headers={**(token or valid()), CSRF_HEADER: csrf}, json=body)


def forged_token(variant: str, secret: str | None = None) -> str:
    """A token a correct auth layer refuses, built like the auth_contract prober's forged tokens."""
    now = int(time.time())
    claims = {"sub": USER, "role": "authenticated", "aud": "authenticated", "iss": "supabase",
              "iat": now, "exp": now + 3600}
    if variant == "garbage":
        return "not-a-jwt." + secrets.token_urlsafe(24)
    if variant == "wrong_signature":
        return jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")
    if variant == "alg_none":
        return jwt.encode(claims, None, algorithm="none")
    assert "expired" == variant
    stale = {**claims, "iat": now - 7200, "exp": now - 3600}
    return jwt.encode(stale, secret if secret is not None else secrets.token_bytes(32), algorithm="HS256")


