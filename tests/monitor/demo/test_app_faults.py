"""The demo backend's fault switches: what each does to the endpoints, and how clearing undoes it."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import jwt
import pytest
import structlog

from monitor.demo.app import FAULT_NAMES
from monitor.demo.tokens import demo_token
from probes._http import find_missing_relation
from tests.monitor.demo.app_support import (
    SECRET,
    SETTINGS,
    USER,
    RecordingStore,
    bearer,
    forged_token,
    signed_in_put,
    valid,
)

# ---------------------------------------------------------------------------------------------- faults


def test_fault_listing_and_unknown(client: httpx.Client) -> None:
    """GET /_faults lists active and known faults; an unknown name is a 404 listing the known ones."""
    assert {"active": [], "known": list(FAULT_NAMES)} == client.get("/_faults").json()
    client.post("/_faults/voice_down")
    assert ["voice_down"] == client.get("/_faults").json()["active"]
    unknown = client.post("/_faults/meltdown")
    assert 404 == unknown.status_code
    assert list(FAULT_NAMES) == unknown.json()["known"]
    assert "unknown fault 'meltdown'" in unknown.json()["detail"]


def test_settings_500_and_reset(client: httpx.Client) -> None:
    """settings_500 answers 500 to everyone before auth; DELETE /_faults brings back the 403."""
    client.post("/_faults/settings_500")
    assert (500, 500) == (client.get(SETTINGS).status_code, client.get(SETTINGS, headers=valid()).status_code)
    client.delete("/_faults")
    assert 403 == client.get(SETTINGS).status_code


def test_settings_open(client: httpx.Client) -> None:
    """settings_open disables auth: 200 without a token."""
    client.post("/_faults/settings_open")
    assert 200 == client.get(SETTINGS).status_code


def test_settings_db_500_is_behind_the_auth_wall(client: httpx.Client) -> None:
    """settings_db_500: anonymous and forged callers still get 403/401; signed-in GET and PUT get a 500 naming
    relation user_settings (42P01); clearing brings the 200 back."""
    client.post("/_faults/settings_db_500")
    assert (403, 401) == (client.get(SETTINGS).status_code,
                          client.get(SETTINGS, headers=bearer(forged_token("wrong_signature"))).status_code)
    expected = (500, {"detail": 'relation "user_settings" does not exist', "code": "42P01"})
    for broken in (client.get(SETTINGS, headers=valid()), signed_in_put(client, SETTINGS, {"voice_enabled": True})):
        assert expected == (broken.status_code, broken.json())
    client.delete("/_faults")
    assert 200 == client.get(SETTINGS, headers=valid()).status_code


def test_lost_write_answers_200_and_stores_nothing(client: httpx.Client) -> None:
    """lost_write: a PUT answers 200 showing the new value, but the next GET still has the old one."""
    assert 200 == signed_in_put(client, SETTINGS, {"monitor_nonce": "before"}).status_code
    client.post("/_faults/lost_write")
    written = signed_in_put(client, SETTINGS, {"monitor_nonce": "after"})
    assert (200, "after") == (written.status_code, written.json()["monitor_nonce"])
    assert "before" == client.get(SETTINGS, headers=valid()).json()["monitor_nonce"]


def test_tenant_leak_drops_the_owner_check(client: httpx.Client) -> None:
    """tenant_leak: a signed-in user reads another user's stored settings (200) instead of a 403; bad tokens are
    still refused."""
    other = "00000000-0000-4000-8000-000000000002"
    owner = bearer(demo_token(SECRET, other, 600))
    signed_in_put(client, f"/api/v1/users/{other}/settings", {"language": "fr"}, owner)
    assert 403 == client.get(f"/api/v1/users/{other}/settings", headers=valid()).status_code
    client.post("/_faults/tenant_leak")
    leaked = client.get(f"/api/v1/users/{other}/settings", headers=valid())
    assert (200, "fr") == (leaked.status_code, leaked.json()["language"])
    assert 401 == client.get(SETTINGS, headers=bearer(forged_token("wrong_signature"))).status_code


@pytest.mark.parametrize("variant", ["wrong_signature", "alg_none", "expired"])
def test_accept_forged_tokens_trusts_an_unverified_sub(client: httpx.Client, variant: str) -> None:
    """accept_forged_tokens: a token that fails verification but names the path's user is let in (200); one naming
    someone else still meets the owner check (403); a token that is not a JWT is still 401."""
    client.post("/_faults/accept_forged_tokens")
    now = int(time.time())
    mine = {"sub": USER, "aud": "authenticated", "iat": now - 7200, "exp": now - 3600 if variant == "expired" else
            now + 3600}

    def forge(claims: dict[str, Any]) -> str:
        key = {"wrong_signature": secrets.token_bytes(32), "alg_none": None, "expired": SECRET}[variant]
        return jwt.encode(claims, key, algorithm="none" if variant == "alg_none" else "HS256")

    token = forge(mine)
    assert 200 == client.get(SETTINGS, headers=bearer(token)).status_code
    assert 403 == client.get(SETTINGS, headers=bearer(forge({**mine, "sub": "someone-else"}))).status_code
    assert 401 == client.get(SETTINGS, headers=bearer(forged_token("garbage"))).status_code
    client.delete("/_faults")
    assert 401 == client.get(SETTINGS, headers=bearer(token)).status_code


@pytest.mark.parametrize("name", ["revoke_grants", "rls_recursion"])
def test_database_faults_need_a_database(client: httpx.Client, name: str) -> None:
    """Without PostgreSQL a fault that changes the database is refused 409, saying why, and is not switched on."""
    refused = client.post(f"/_faults/{name}")
    assert (409, True) == (refused.status_code, "runs without one" in refused.json()["detail"])
    assert [] == client.get("/_faults").json()["active"]


def test_drop_table(client: httpx.Client, store: RecordingStore) -> None:
    """drop_table: unauthenticated callers still get 403, signed-in ones a 500 naming the relation; reset restores."""
    store.calls.clear()
    client.post("/_faults/drop_table")
    assert 403 == client.get(SETTINGS).status_code
    broken = client.get(SETTINGS, headers=valid())
    assert (500, {"detail": 'relation "user_settings" does not exist', "code": "42P01"}) == (
        broken.status_code, broken.json())
    found = find_missing_relation(broken.content)
    assert found is not None
    assert ("user_settings",) == found.tables
    client.delete("/_faults")
    assert 200 == client.get(SETTINGS, headers=valid()).status_code
    assert ["drop_table", "restore"] == store.calls


def test_voice_down(client: httpx.Client) -> None:
    """voice_down makes voice health 503 unavailable and TTS 503."""
    client.post("/_faults/voice_down")
    down = client.get("/api/v1/pam/voice/health")
    assert (503, "unavailable") == (down.status_code, down.json()["status"])
    assert 503 == client.post("/api/v1/pam/voice/tts", json={"text": "x"}).status_code


def test_garbage_and_short_audio(client: httpx.Client) -> None:
    """garbage makes /health a 200 that is not JSON; short_audio makes TTS 200 bytes of zeros."""
    client.post("/_faults/garbage")
    client.post("/_faults/short_audio")
    health = client.get("/health")
    assert 200 == health.status_code
    with pytest.raises(ValueError, match=r"Expecting value|codec"):
        health.json()
    tts = client.post("/api/v1/pam/voice/tts", json={"text": "x"})
    assert (200, "audio/wav", b"\x00" * 200) == (tts.status_code, tts.headers["content-type"], tts.content)


def test_hang(client: httpx.Client) -> None:
    """hang stalls every endpoint but /_faults until the client gives up."""
    client.post("/_faults/hang")
    with pytest.raises(httpx.ReadTimeout):
        client.get("/health", timeout=0.3)
    assert ["hang"] == client.get("/_faults").json()["active"]
    client.delete("/_faults")
    assert 200 == client.get("/health").status_code


def test_fault_flips_are_logged(client: httpx.Client) -> None:
    """Setting a fault logs demo.fault_set with its name; clearing logs demo.faults_cleared."""
    with structlog.testing.capture_logs() as logs:
        client.post("/_faults/voice_down")
        client.delete("/_faults")
    assert [("demo.fault_set", "voice_down"), ("demo.faults_cleared", None)] == [
        (entry["event"], entry.get("fault")) for entry in logs
    ]


