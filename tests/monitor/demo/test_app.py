"""The demo backend app: its endpoints, HS256 auth and CSRF, each fault switch, and the probes' verdicts on it."""

from __future__ import annotations

import io
import secrets
import time
import wave
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
import structlog

from monitor.core.config import AuthContractCheck, HttpCheck, VoiceCheck
from monitor.core.results import Outcome
from monitor.demo.app import DEFAULT_SETTINGS, FAULT_NAMES, create_demo_app
from monitor.demo.store import MemorySettingsStore
from monitor.demo.tokens import CSRF_COOKIE, CSRF_HEADER, demo_token, new_csrf_token
from probes._audio import sniff
from probes._http import find_missing_relation
from tests.support.servers import serve_asgi
from tests.support.targets import TIMING, DepsFactory, run_probe

SECRET = "demo-secret-that-is-long-enough-for-hs256"
USER = "11111111-2222-3333-4444-555555555555"
SETTINGS = f"/api/v1/users/{USER}/settings"


class RecordingStore(MemorySettingsStore):
    """A MemorySettingsStore that remembers which table operations the app asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def drop_table(self) -> None:
        self.calls.append("drop_table")
        await super().drop_table()

    async def restore(self) -> None:
        self.calls.append("restore")
        await super().restore()


@pytest.fixture(scope="module")
def store() -> RecordingStore:
    return RecordingStore()


@pytest.fixture(scope="module")
def base_url(store: RecordingStore) -> Iterator[str]:
    with serve_asgi(create_demo_app(jwt_secret=SECRET, store=store)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=5, trust_env=False) as c:
        yield c
        c.delete("/_faults")


@pytest.fixture
async def make_deps() -> AsyncIterator[DepsFactory]:
    factory = DepsFactory()
    yield factory
    await factory.aclose()


async def set_fault(base_url: str, name: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=5, trust_env=False) as c:
        (await c.post(f"/_faults/{name}")).raise_for_status()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def valid() -> dict[str, str]:
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


# ---------------------------------------------------------------------------------------------- probes vs demo


def check(model: Any, **fields: Any) -> Any:
    return model.model_validate({"name": "c", "target": "t", **TIMING, **fields})


SETTINGS_CONTRACT = {"kind": "auth_contract", "path": "/api/v1/users/{user_id}/settings",
                     "params": {"user_id": USER}}


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [(None, Outcome.OK), ("settings_500", Outcome.SERVER_ERROR), ("settings_open", Outcome.AUTH_BYPASS),
     ("drop_table", Outcome.OK)],
)
async def test_auth_contract_against_demo(client: httpx.Client, make_deps: DepsFactory, base_url: str,
                                          fault: str | None, outcome: Outcome) -> None:
    """auth_contract on settings: ok; 500 is server_error; open is auth_bypass; drop_table stays ok (seed incident)."""
    if fault:
        await set_fault(base_url, fault)
    result = await run_probe(
        check(AuthContractCheck, **SETTINGS_CONTRACT, jwt_secret=SECRET), make_deps(base_url)
    )
    assert outcome == result.outcome


async def test_signed_in_check_sees_the_missing_table(client: httpx.Client, make_deps: DepsFactory,
                                                      base_url: str) -> None:
    """An http check with a valid demo_token is ok, and table_missing naming user_settings after drop_table."""
    deps = make_deps(base_url, headers={"Authorization": f"Bearer {demo_token(SECRET, USER, 600)}"})
    signed_in = check(HttpCheck, kind="http", path=SETTINGS)
    assert Outcome.OK == (await run_probe(signed_in, deps)).outcome
    await set_fault(base_url, "drop_table")
    result = await run_probe(signed_in, deps)
    assert (Outcome.TABLE_MISSING, ["user_settings"]) == (result.outcome, result.details["tables_missing"])


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [(None, Outcome.OK), ("voice_down", Outcome.SERVER_ERROR), ("short_audio", Outcome.INVALID_RESPONSE),
     ("hang", Outcome.TIMEOUT)],
)
async def test_voice_against_demo(client: httpx.Client, make_deps: DepsFactory, base_url: str,
                                  fault: str | None, outcome: Outcome) -> None:
    """The example voice check: ok; voice_down server_error; short_audio invalid_response; hang timeout."""
    if fault:
        await set_fault(base_url, fault)
    spec = check(VoiceCheck, kind="voice", path="/api/v1/pam/voice/health", timeout=0.5,
                 expect={"json": {"status": "healthy"}},
                 synthesize={"path": "/api/v1/pam/voice/tts", "json": {"text": "health check"}, "min_bytes": 1000})
    assert outcome == (await run_probe(spec, make_deps(base_url))).outcome


async def test_garbage_health_against_demo(client: httpx.Client, make_deps: DepsFactory, base_url: str) -> None:
    """The example backend_health check turns invalid_response when /health stops being JSON."""
    spec = check(HttpCheck, kind="http", path="/health", expect={"status": [200], "json": {"status": "healthy"}})
    assert Outcome.OK == (await run_probe(spec, make_deps(base_url))).outcome
    await set_fault(base_url, "garbage")
    assert Outcome.INVALID_RESPONSE == (await run_probe(spec, make_deps(base_url))).outcome
