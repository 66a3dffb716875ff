"""The demo backend app: its endpoints, its HS256 auth, each fault switch, and the probes' verdicts against it."""

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
from monitor.demo.app import FAULTS, create_demo_app
from monitor.demo.store import MemorySettingsStore
from monitor.demo.tokens import demo_token
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
    """A valid demo_token reads defaults, writes settings and reads them back."""
    other = f"/api/v1/users/{USER[::-1]}/settings"
    token = bearer(demo_token(SECRET, USER[::-1], 600))
    first = client.get(other, headers=token)
    assert (200, True) == (first.status_code, first.json()["voice_enabled"])
    assert 200 == client.put(other, headers=token, json={"voice_enabled": False}).status_code
    assert {"voice_enabled": False} == client.get(other, headers=token).json()


# ---------------------------------------------------------------------------------------------- faults


def test_fault_listing_and_unknown(client: httpx.Client) -> None:
    """GET /_faults lists active and known faults; an unknown name is a 404 listing the known ones."""
    assert {"active": [], "known": list(FAULTS)} == client.get("/_faults").json()
    client.post("/_faults/voice_down")
    assert ["voice_down"] == client.get("/_faults").json()["active"]
    unknown = client.post("/_faults/meltdown")
    assert 404 == unknown.status_code
    assert list(FAULTS) == unknown.json()["known"]
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
