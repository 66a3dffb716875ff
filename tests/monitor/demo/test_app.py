"""The demo backend app: its endpoints, HS256 auth, CSRF double submit and OpenAPI document."""

from __future__ import annotations

import io
import wave

import httpx
import pytest

from monitor.demo.app import DEFAULT_SETTINGS, FAULT_NAMES
from monitor.demo.tokens import CSRF_COOKIE, CSRF_HEADER, demo_token, new_csrf_token
from probes._audio import sniff
from tests.monitor.demo.app_support import (
    SECRET,
    SETTINGS,
    USER,
    bearer,
    forged_token,
    signed_in_put,
    valid,
)

# ---------------------------------------------------------------------------------------------- endpoints


def test_health_and_voice(client: httpx.Client) -> None:
    """/health and voice health say healthy; TTS answers a real 0.5 s 16 kHz mono WAV as audio/wav."""
    assert "healthy" == client.get("/health").json()["status"]
    assert {"status": "healthy", "engine": "edge-tts"} == client.get("/api/v1/pam/voice/health").json()
    tts = client.post("/api/v1/pam/voice/tts", json={"text": "hello"})
    assert (200, "audio/wav") == (tts.status_code, tts.headers["content-type"])
    assert "wav" == sniff(tts.content).format
    with wave.open(io.BytesIO(tts.content)) as audio:
        assert (1, 16000, 8000) == (audio.getnchannels(), audio.getframerate(), audio.getnframes())
    assert 422 == client.post("/api/v1/pam/voice/tts", json={"nope": 1}).status_code


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 403, "Not authenticated"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 403, "Not authenticated"),
        ({"Authorization": "Bearer"}, 403, "Not authenticated"),
        (bearer(forged_token("garbage")), 401, "Invalid authentication credentials"),
        (bearer(forged_token("wrong_signature")), 401, "Invalid authentication credentials"),
        (bearer(forged_token("alg_none")), 401, "Invalid authentication credentials"),
        (bearer(forged_token("expired", secret=SECRET)), 401, "Invalid authentication credentials"),
        (bearer(demo_token(SECRET, USER, -10)), 401, "Invalid authentication credentials"),
        (bearer(demo_token(SECRET, "someone-else", 600)), 403, "Not allowed to access another user's settings"),
    ],
    ids=["none", "basic", "empty-bearer", "garbage", "wrong-signature", "alg-none", "expired-forged",
         "expired-demo", "other-user"],
)
def test_settings_refuse_bad_credentials(client: httpx.Client, headers: dict[str, str], status: int,
                                         detail: str) -> None:
    """Settings refuse like FastAPI's HTTPBearer: 403 without a bearer token, 401 for an invalid one."""
    for method in ("GET", "PUT"):
        answer = client.request(method, SETTINGS, headers=headers, json={"voice_enabled": False})
        assert (status, {"detail": detail}) == (answer.status_code, answer.json())


def test_settings_with_a_valid_token(client: httpx.Client) -> None:
    """A valid demo_token reads the defaults, merges a write (with the CSRF token) and reads it back."""
    other = f"/api/v1/users/{USER[::-1]}/settings"
    token = bearer(demo_token(SECRET, USER[::-1], 600))
    first = client.get(other, headers=token)
    assert (200, dict(DEFAULT_SETTINGS)) == (first.status_code, first.json())
    written = signed_in_put(client, other, {"voice_enabled": False, "monitor_nonce": "n1"}, token)
    expected = {**DEFAULT_SETTINGS, "voice_enabled": False, "monitor_nonce": "n1"}
    assert (200, expected) == (written.status_code, written.json())
    assert expected == client.get(other, headers=token).json()
    assert {**expected, "monitor_nonce": "n2"} == signed_in_put(client, other, {"monitor_nonce": "n2"}, token).json()


def test_csrf_token_is_json_and_a_matching_cookie(client: httpx.Client) -> None:
    """GET /api/auth/csrf-token answers {"csrf_token": t} and sets cookie csrf_token=t (HttpOnly, SameSite=Strict)."""
    answer = client.get("/api/auth/csrf-token")
    token = answer.json()["csrf_token"]
    cookie = answer.headers["set-cookie"]
    assert (200, True, True, True) == (answer.status_code, cookie.startswith(f"{CSRF_COOKIE}={token};"),
                                       "httponly" in cookie.lower(), "samesite=strict" in cookie.lower())
    assert token != client.get("/api/auth/csrf-token").json()["csrf_token"]


@pytest.mark.parametrize(
    ("cookie", "header"),
    [(None, None), ("fresh", None), (None, "fresh"), ("fresh", "other"), ("forged", "forged")],
    ids=["neither", "cookie-only", "header-only", "mismatch", "not-signed-by-the-backend"],
)
def test_put_without_a_valid_csrf_pair_is_refused(base_url: str, cookie: str | None, header: str | None) -> None:
    """A signed-in PUT is refused 403 unless header and cookie carry the same token signed by this backend."""
    values = {"fresh": new_csrf_token(SECRET), "other": new_csrf_token(SECRET), "forged": new_csrf_token("x" * 40)}
    cookies = {CSRF_COOKIE: values[cookie]} if cookie else {}
    headers = {**valid(), **({CSRF_HEADER: values[header]} if header else {})}
    with httpx.Client(base_url=base_url, timeout=5, trust_env=False, cookies=cookies) as c:
        refused = c.put(SETTINGS, headers=headers, json={"voice_enabled": False})
    assert (403, {"detail": "CSRF token missing or invalid"}) == (refused.status_code, refused.json())


def test_put_body_must_be_a_small_json_object(client: httpx.Client) -> None:
    """A signed-in PUT with a JSON list is 422 and one over 16 KiB is 413; nothing is stored."""
    assert 422 == signed_in_put(client, SETTINGS, [1, 2]).status_code
    assert 413 == signed_in_put(client, SETTINGS, {"x": "y" * 20_000}).status_code
    assert "x" not in client.get(SETTINGS, headers=valid()).json()


def test_openapi_document_describes_security_and_bodies(client: httpx.Client) -> None:
    """/openapi.json is OpenAPI 3.1: settings GET/PUT need bearer auth, PUT has a JSON body; the rest is public."""
    doc = client.get("/openapi.json").json()
    secured = {(path, method) for path, item in doc["paths"].items() for method, op in item.items()
               if isinstance(op, dict) and op.get("security")}
    assert ("3.1.0", {("/api/v1/users/{user_id}/settings", "get"), ("/api/v1/users/{user_id}/settings", "put")}) == (
        doc["openapi"], secured)
    put = doc["paths"]["/api/v1/users/{user_id}/settings"]["put"]
    assert "#/components/schemas/Settings" == put["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert list(FAULT_NAMES) == doc["paths"]["/_faults/{name}"]["post"]["parameters"][0]["schema"]["enum"]
    served = {"/health", "/openapi.json", "/api/v1/pam/voice/health", "/api/v1/pam/voice/tts",
              "/api/auth/csrf-token", "/api/v1/users/{user_id}/settings", "/_faults", "/_faults/{name}"}
    assert served - {"/openapi.json"} == set(doc["paths"])


def test_discover_reads_the_demo_document(base_url: str) -> None:
    """`discover` turns the demo's /openapi.json into auth_contract checks for exactly the two settings operations."""
    from monitor.discover import discover_checks, load_document

    checks = discover_checks(load_document(f"{base_url}/openapi.json"), "backend")
    assert [("GET", "/api/v1/users/{user_id}/settings"), ("PUT", "/api/v1/users/{user_id}/settings")] == [
        (c["method"], c["path"]) for c in checks]


