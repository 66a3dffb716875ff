"""Ok for the right reason: a refusal from a wall in front of the backend (an IP blocker, a WAF, a gateway, a
limiter) or from a broken identity never reads ok, and says who answered. Real servers on 127.0.0.1: the signed-in
Backend behind tests/support/refusers.Wall."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.core.config import (
    AuthContractCheck,
    HttpCheck,
    JourneyCheck,
    PostgrestCheck,
    TenantIsolationCheck,
    VoiceCheck,
)
from monitor.core.results import Outcome, ProbeResult
from monitor.refusals import StoredRefusals
from probes import auth_contract
from probes.deps import Deps
from tests.probes.signed_in import Made, minted
from tests.support.refusers import Wall
from tests.support.servers import serve_asgi
from tests.support.signed_in import MONITOR_SUB, OTHER_SUB, Backend, create_backend_app
from tests.support.targets import TIMING, run_probe

SETTINGS = "/api/v1/users/{user_id}/settings"
Walled = tuple[Backend, Wall, str]


@pytest.fixture
def walled() -> Iterator[Walled]:
    """The signed-in Backend behind a Wall whose switches are all off."""
    state = Backend()
    wall = Wall(create_backend_app(state))
    with serve_asgi(wall) as url:
        yield state, wall, url


def contract(**fields: Any) -> AuthContractCheck:
    """An auth_contract check on the settings route of target `backend`."""
    return AuthContractCheck.model_validate({"name": "settings_unauth", "kind": "auth_contract", "target": "backend",
                                             **TIMING, "path": SETTINGS, "params": {"user_id": OTHER_SUB}, **fields})


def isolation(**fields: Any) -> TenantIsolationCheck:
    """A tenant_isolation check as monitor_user on another user's settings."""
    return TenantIsolationCheck.model_validate({"name": "isolation", "kind": "tenant_isolation", "target": "backend",
                                                "identity": "monitor_user", **TIMING, "path": SETTINGS,
                                                "params": {"user_id": OTHER_SUB}, **fields})


async def learned(check: AuthContractCheck, deps: Deps) -> list[ProbeResult]:
    """Two good runs: the endpoint's own refusal shapes are learned."""
    runs = [await run_probe(check, deps), await run_probe(check, deps)]
    assert [Outcome.OK, Outcome.OK] == [r.outcome for r in runs], [r.message for r in runs]
    assert "refusal shape learned" in runs[1].message, runs[1].message
    return runs


# ---------------------------------------------------------------------------------------------- auth_contract


async def test_ip_blocker_is_never_all_refused_ok(walled: Walled, made: Made) -> None:
    """The measured incident: the IP-blocking middleware bans the monitor after a few endpoints and answers the JSON
    "blocked" 403 to everything. auth_contract used to read "all 5 refused: ok"; now it is invalid_response with
    foreign_refusal (blocked, the shape, a redacted excerpt), naming the method, path and the blocker."""
    _, wall, url = walled
    wall.ban_after = 0
    result = await run_probe(contract(), made(url, {}))
    assert Outcome.INVALID_RESPONSE == result.outcome, result.message
    assert result.message.startswith(f"GET {SETTINGS}: no token got 403, forged garbage token got 403"), result.message
    assert "a blocker, WAF or gateway refused pam-monitor itself" in result.message
    assert {"shape": "403 application/json keys=[message]", "blocked": True,
            "excerpt": '{"message": "Your IP address has been blocked due to security violations"}'} == dict(
        result.details["foreign_refusal"])


async def test_waf_page_after_learning_names_both_shapes(walled: Walled, made: Made) -> None:
    """Learned from two good runs (403 and 401 JSON {detail}), a WAF's HTML 403 without any block marker is
    invalid_response naming both shapes, with foreign_refusal (not blocked)."""
    _, wall, url = walled
    deps = made(url, {})
    await learned(contract(), deps)
    wall.waf = "plain"
    result = await run_probe(contract(), deps)
    assert Outcome.INVALID_RESPONSE == result.outcome, result.message
    assert ("no token refused with 403 text/html, but this endpoint's auth layer refuses with 401 application/json "
            "keys=[detail] or 403 application/json keys=[detail] (learned from its first good runs)") in result.message
    assert (False, "403 text/html") == (result.details["foreign_refusal"]["blocked"],
                                        result.details["foreign_refusal"]["shape"])


async def test_waf_access_denied_page_is_blocked_without_a_baseline(walled: Walled, made: Made) -> None:
    """An HTML "Access Denied" WAF page is a block marker: invalid_response on the very first run."""
    _, wall, url = walled
    wall.waf = "denied"
    result = await run_probe(contract(), made(url, {}))
    assert (Outcome.INVALID_RESPONSE, True) == (result.outcome, result.details["foreign_refusal"]["blocked"])


async def test_basic_gateway_in_front_of_a_bearer_app(walled: Walled, made: Made) -> None:
    """A gateway answering 401 with `WWW-Authenticate: Basic` in front of an app whose own refusal is 401 JSON:
    same status, another fingerprint (media type and auth scheme), so invalid_response naming the gateway."""
    _, wall, url = walled
    deps = made(url, {})
    await learned(contract(), deps)
    wall.gateway = True
    result = await run_probe(contract(), deps)
    assert Outcome.INVALID_RESPONSE == result.outcome, result.message
    assert "refused with 401 text/plain WWW-Authenticate: Basic" in result.message
    assert "a gateway asking for Basic credentials answered" in result.message


async def test_declared_refusal_shape_is_checked_from_the_first_run(walled: Walled, made: Made) -> None:
    """With expect.refusal declared, nothing is learned: the gateway's refusal fails the first run; the
    backend's own refusals pass it."""
    _, wall, url = walled
    declared = contract(expect={"refusal": {"media_type": "application/json", "keys": ["detail"]}})
    deps = made(url, {})
    assert Outcome.OK == (await run_probe(declared, deps)).outcome
    wall.gateway = True
    result = await run_probe(declared, deps)
    assert Outcome.INVALID_RESPONSE == result.outcome
    assert "(declared in expect.refusal)" in result.message


async def test_a_blocked_body_is_never_learned(walled: Walled, made: Made) -> None:
    """Banned from the start: no run is ok and nothing is learned; unbanned, the shapes learned are the backend's
    own JSON {detail}, never the blocker's {message}."""
    _, wall, url = walled
    wall.banned = True
    deps = made(url, {})
    check = contract()
    for _ in range(3):
        assert Outcome.INVALID_RESPONSE == (await run_probe(check, deps)).outcome
    learner = auth_contract.learner_for(check, deps)
    assert learner.expected() is None
    wall.banned, wall.ban_after = False, None
    await learned(check, deps)
    expected = learner.expected()
    assert expected is not None
    assert "401 application/json keys=[detail] or 403 application/json keys=[detail]" == expected.describe()


async def test_learned_shape_survives_a_restart(walled: Walled, made: Made, tmp_path: Path) -> None:
    """Learned through the daemon's StoredRefusals, the shape is read back by a new one on the same state_dir (a
    restart), so a WAF that went up meanwhile is caught on the first run, not learned."""
    _, wall, url = walled
    first = StoredRefusals.open(tmp_path / "state")
    deps = made(url, {})
    deps.refusals = first
    await learned(contract(), deps)
    first.close()
    again = made(url, {})
    again.refusals = StoredRefusals.open(tmp_path / "state")
    wall.waf = "plain"
    result = await run_probe(contract(), again)
    assert Outcome.INVALID_RESPONSE == result.outcome, result.message
    assert "learned from its first good runs" in result.message
    again.refusals.close()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- tenant_isolation


async def test_leak_with_a_broken_identity_is_identity_failed_not_ok(walled: Walled, made: Made) -> None:
    """tenant_leak on AND an identity minted with the wrong secret: every request gets 401, which used to read
    "refused another user's settings: ok". The own-read control fails, so the run is identity_failed saying the
    identity could not read its own data and what it got."""
    state, _, url = walled
    state.tenant_leak = True
    deps = made(url, {"monitor_user": minted(MONITOR_SUB, secret="not-the-backend-secret-0123456789abcd")})
    result = await run_probe(isolation(), deps)
    assert (Outcome.IDENTITY_FAILED, 401) == (result.outcome, result.status_code), result.message
    assert result.message.startswith(f"GET {SETTINGS}: monitor_user could not read its own settings (expected 2xx, "
                                     "got 401 "), result.message
    assert "its token was refused" in result.message


async def test_working_identity_still_sees_the_leak(walled: Walled, made: Made) -> None:
    """The control does not hide the finding: with a working identity the leak is auth_bypass."""
    state, _, url = walled
    state.tenant_leak = True
    result = await run_probe(isolation(), made(url, {"monitor_user": minted(MONITOR_SUB)}))
    assert Outcome.AUTH_BYPASS == result.outcome, result.message


async def test_isolation_behind_the_ip_blocker_is_foreign(walled: Walled, made: Made) -> None:
    """The blocker's 403 is not the owner check's: invalid_response with foreign_refusal, never ok."""
    _, wall, url = walled
    wall.banned = True
    result = await run_probe(isolation(), made(url, {"monitor_user": minted(MONITOR_SUB)}))
    assert (Outcome.INVALID_RESPONSE, True) == (result.outcome, result.details["foreign_refusal"]["blocked"])


async def test_isolation_learns_the_owner_checks_shape(walled: Walled, made: Made) -> None:
    """After two good runs the owner check's 403 JSON is learned; a WAF page then is invalid_response."""
    _, wall, url = walled
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
    check = isolation()
    for _ in range(2):
        assert Outcome.OK == (await run_probe(check, deps)).outcome
    wall.waf = "plain"
    result = await run_probe(check, deps)
    assert Outcome.INVALID_RESPONSE == result.outcome, result.message
    assert "was refused with 403 text/html, but this endpoint's owner check refuses with 403 application/json " \
        "keys=[detail]" in result.message, result.message
    assert False is result.details["foreign_refusal"]["blocked"]


# ---------------------------------------------------------------------------------------------- journeys


def settings_journey() -> JourneyCheck:
    """Read then write the identity's own settings (the CSRF token captured first)."""
    steps = [{"name": "csrf", "path": "/api/auth/csrf-token", "capture": {"csrf": "json.csrf_token"}},
             {"name": "read", "path": "/api/v1/users/{sub}/settings"},
             {"name": "write", "method": "PUT", "path": "/api/v1/users/{sub}/settings",
              "headers": {"X-CSRF-Token": "{csrf}"}, "json": {"n": "{run_id}"}}]
    return JourneyCheck.model_validate({"name": "j", "kind": "journey", "target": "backend",
                                        "identity": "monitor_user", **TIMING, "steps": steps})


async def test_wrong_jwt_secret_is_identity_failed_naming_the_step(walled: Walled, made: Made) -> None:
    """The identity mints with the wrong secret: the first step that sends the token (read) gets 401, which is
    identity_failed naming the step, method and path, never an unexpected_status of the backend."""
    _, _, url = walled
    deps = made(url, {"monitor_user": minted(MONITOR_SUB, secret="not-the-backend-secret-0123456789abcd")})
    result = await run_probe(settings_journey(), deps)
    assert (Outcome.IDENTITY_FAILED, "read", 401) == (result.outcome, result.details["step"], result.status_code)
    assert result.message.startswith("step read: GET /api/v1/users/{sub}/settings: monitor_user's token was "
                                     "refused: 401 after "), result.message


async def test_rate_limited_journey_names_the_limited_step(walled: Walled, made: Made) -> None:
    """A limiter answering 429 before routing, on the settings routes only: the result names the limited step in
    its sentence (with method and path) and in details."""
    _, wall, url = walled
    wall.limit, wall.limit_paths = True, ("/api/v1/users/",)
    result = await run_probe(settings_journey(), made(url, {"monitor_user": minted(MONITOR_SUB)}))
    assert (Outcome.RATE_LIMITED, "read", "read") == (result.outcome, result.details["step"],
                                                      result.details["rate_limited_step"])
    assert result.message.startswith("step read: GET /api/v1/users/{sub}/settings: rate limited: "), result.message


# ---------------------------------------------------------------------------------------------- voice and http


def voice(**fields: Any) -> VoiceCheck:
    """The backend's voice check: health, and a signed-in synthesis."""
    return VoiceCheck.model_validate({
        "name": "voice", "kind": "voice", "target": "backend", **TIMING, "path": "/api/v1/pam/voice/health",
        "synthesize": {"path": "/api/v1/pam/voice/tts", "identity": "monitor_user", "json": {"text": "hi"},
                       "min_bytes": 100}, **fields})


async def test_synthesis_refused_by_csrf_says_csrf(walled: Walled, made: Made) -> None:
    """Synthesis refused by a CSRF middleware says so, with method and path (it used to read only "synthesis:
    expected 2xx, got 403")."""
    _, wall, url = walled
    wall.csrf_posts = True
    result = await run_probe(voice(), made(url, {"monitor_user": minted(MONITOR_SUB)}))
    assert Outcome.UNEXPECTED_STATUS == result.outcome, result.message
    assert "synthesis: POST /api/v1/pam/voice/tts: expected 2xx, got 403 after " in result.message
    assert result.message.endswith("; the CSRF middleware answered"), result.message


async def test_limited_voice_health_fails_without_expect_json(walled: Walled, made: Made) -> None:
    """`{"status": "limited", "tts": "not initialised"}` with 200 is a failure by default (VoiceDegraded), with no
    expect.json written; a `healthy_status` that lists it passes."""
    _, wall, url = walled
    wall.health = {"status": "limited", "tts": "not initialised"}
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
    result = await run_probe(voice(), deps)
    assert Outcome.INVALID_RESPONSE == result.outcome, result.message
    assert result.message.startswith("voice health: GET /api/v1/pam/voice/health: 200 but the body says status "
                                     "'limited', not one of ok, healthy, up, pass"), result.message
    tolerant = await run_probe(voice(healthy_status=["ok", "limited"]), deps)
    assert Outcome.OK == tolerant.outcome, tolerant.message


async def test_http_check_expecting_403_is_not_ok_behind_the_blocker(walled: Walled, made: Made) -> None:
    """An http check that expects 403 gets the blocker's 403: invalid_response with foreign_refusal, never ok."""
    _, wall, url = walled
    wall.banned = True
    check = HttpCheck.model_validate({"name": "h", "kind": "http", "target": "backend", **TIMING,
                                      "path": "/api/v1/users/x/settings", "expect": {"status": [403]}})
    result = await run_probe(check, made(url, {}))
    assert (Outcome.INVALID_RESPONSE, True) == (result.outcome, result.details["foreign_refusal"]["blocked"])


async def test_basic_gateway_in_front_of_a_journey_is_not_the_identity(walled: Walled, made: Made) -> None:
    """A 401 asking for Basic credentials is a gateway's, not the backend refusing the identity's token: the step
    is unexpected_status naming the gateway, with foreign_refusal (not blocked), never identity_failed."""
    _, wall, url = walled
    wall.gateway = True
    result = await run_probe(settings_journey(), made(url, {"monitor_user": minted(MONITOR_SUB)}))
    assert (Outcome.UNEXPECTED_STATUS, "csrf") == (result.outcome, result.details["step"]), result.message
    assert "a gateway asking for Basic credentials answered" in result.message
    assert {"shape": "401 text/plain WWW-Authenticate: Basic", "blocked": False, "excerpt": "Unauthorized"} == dict(
        result.details["foreign_refusal"])


async def test_postgrest_behind_the_blocker_carries_foreign_refusal(walled: Walled, made: Made) -> None:
    """PostgREST's table requests answered by the IP blocker: invalid_response (no table judged missing or present)
    with foreign_refusal, for MonitorBlocked."""
    _, wall, url = walled
    wall.banned = True
    check = PostgrestCheck.model_validate({"name": "rest", "kind": "postgrest", "target": "backend", **TIMING,
                                           "required_tables": ["user_settings"]})
    result = await run_probe(check, made(url, {}))
    assert (Outcome.INVALID_RESPONSE, {}) == (result.outcome, dict(result.tables)), result.message
    assert True is result.details["foreign_refusal"]["blocked"]
