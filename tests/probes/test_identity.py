"""Identities' tokens: minted with the JWT secret and re-minted before expiry, or signed in against a local stand-in
of Supabase Auth (password grant, refresh before expiry, fallback to sign-in, clear failures), shared by checks."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from monitor.core.config import Identity
from monitor.core.results import Outcome
from probes.identity import CLOCK_SKEW_S, Credential, Session, SignInFailed, renew_margin, session_for
from tests.probes.signed_in import EMAIL, PASSWORD, USER_ID, Made, journey, minted, signed_in
from tests.support.clock import FakeClock
from tests.support.poll import until
from tests.support.servers import free_port
from tests.support.signed_in import JWT_SECRET, MONITOR_SUB, Auth, Backend
from tests.support.targets import run_probe

Server = tuple[Backend, str]
AuthServer = tuple[Auth, str]


def _deadline(seconds: float = 3.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def _credential(session: Session, seconds: float = 3.0) -> Credential:
    got = await session.credential(_deadline(seconds))
    assert isinstance(got, Credential), got
    return got


@pytest.mark.parametrize(("lifetime", "margin"), [(2.0, 1.0), (60.0, 30.0), (300.0, 60.0), (3600.0, 720.0)])
def test_renew_margin(lifetime: float, margin: float) -> None:
    """A fifth of the lifetime, at least 30 s, at most half of it."""
    assert margin == renew_margin(lifetime)


async def test_minted_token_has_supabase_claims_and_is_reused_until_near_expiry(made: Made) -> None:
    """Minted: HS256 with the secret, sub/role/aud/iat/exp (exp = now + ttl) plus claims; the same token is handed
    out while it outlives the run by the margin (60 s of a 5 min ttl), and a new one after that."""
    clock = FakeClock(time.time())
    identity = Identity.model_validate({"mint": {"secret": JWT_SECRET, "sub": MONITOR_SUB, "ttl": "5m",
                                                 "claims": {"app_metadata": {"tier": "monitor"}}}})
    deps = made("http://127.0.0.1:1", {"me": identity}, clock=clock)
    session = session_for(deps, "me")
    assert session is not None
    first = await _credential(session)
    claims = jwt.decode(first.token, JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    now = int(clock.now)
    assert {"sub": MONITOR_SUB, "role": "authenticated", "aud": "authenticated", "iat": now - CLOCK_SKEW_S,
            "exp": now + 300, "app_metadata": {"tier": "monitor"}} == claims
    assert dict(first.claims) == claims

    clock.advance(230)  # 70 s left: more than 60 s margin + the 3 s run
    assert first is await _credential(session)
    clock.advance(10)  # 60 s left: renew now
    second = await _credential(session)
    assert second.token != first.token
    # Its iat is in the future of the real clock (the fake one moved 4 min): check the signature, not the times.
    renewed = jwt.decode(second.token, JWT_SECRET, algorithms=["HS256"], audience="authenticated",
                         options={"verify_iat": False})
    assert (now + 240 - CLOCK_SKEW_S, now + 240 + 300) == (renewed["iat"], renewed["exp"])


async def test_two_second_ttl_is_reminted_and_the_old_token_really_expires(backend: Server, made: Made) -> None:
    """With a real clock and ttl 2 s, consecutive journeys pass across expiries: the token is reused at once,
    replaced once fewer than margin + run time remain, and the backend refuses the old token after its exp."""
    state, url = backend
    deps = made(url, {"monitor_user": minted(MONITOR_SUB, ttl="2s")})
    check = journey(timeout=0.4)
    assert Outcome.OK == (await run_probe(check, deps)).outcome
    session = session_for(deps, "monitor_user")
    assert session is not None
    assert session.current is not None
    first = session.current
    assert Outcome.OK == (await run_probe(check, deps)).outcome
    assert first is session.current, "a fresh 2 s token was not reused"

    # Renewal is due once under 1.0 s (margin) + 0.4 s (run) remain.
    until(lambda: first.expires_at - time.monotonic() < 1.4, timeout=3, interval=0.02, what="the token to age")
    result = await run_probe(check, deps)
    assert Outcome.OK == result.outcome, result.message
    assert first is not session.current
    until(lambda: time.time() > jwt.decode(first.token, options={"verify_signature": False})["exp"] + 1,
          timeout=4, interval=0.05, what="the first token's exp to pass")
    assert Outcome.OK == (await run_probe(check, deps)).outcome
    assert first.token in state.tokens
    assert None is state.subject_of(first.token), "the backend still accepts the expired token"


async def test_concurrent_checks_share_one_mint(made: Made) -> None:
    """Ten checks asking at once for the same identity get the very same token (one mint)."""
    deps = made("http://127.0.0.1:1", {"me": minted(MONITOR_SUB)})
    session = session_for(deps, "me")
    assert session is not None
    got = await asyncio.gather(*(session.credential(_deadline()) for _ in range(10)))
    assert 1 == len({id(c) for c in got})
    assert 1 == session.attempts


async def test_sign_in_grant_token_used_and_reused(backend: Server, auth: AuthServer, made: Made) -> None:
    """Password grant with the apikey header; the journey sends the issued token and reads the user's id as
    {sub}; a second run reuses it (no second grant)."""
    state, url = backend
    auth_state, auth_url = auth
    deps = made(url, {"monitor_user": signed_in(auth_url)})
    check = journey()
    assert Outcome.OK == (await run_probe(check, deps)).outcome
    assert Outcome.OK == (await run_probe(check, deps)).outcome
    assert ["password"] == auth_state.grants
    assert {auth_state.issued[0]} == set(state.tokens)
    assert USER_ID in state.settings


async def test_sign_in_refreshes_before_expiry(backend: Server, auth: AuthServer, made: Made) -> None:
    """A 40 s token is refreshed with its refresh token once fewer than 20 s (+ the run) remain; the journey
    then carries the refreshed token."""
    state, url = backend
    auth_state, auth_url = auth
    auth_state.expires_in = 40
    clock = FakeClock(time.time())
    deps = made(url, {"monitor_user": signed_in(auth_url)}, clock=clock)
    check = journey()
    assert Outcome.OK == (await run_probe(check, deps)).outcome
    clock.advance(10)
    assert Outcome.OK == (await run_probe(check, deps)).outcome
    assert ["password"] == auth_state.grants
    clock.advance(10)  # 20 s left < 20 s margin + 3 s run
    assert Outcome.OK == (await run_probe(check, deps)).outcome
    assert ["password", "refresh_token"] == auth_state.grants
    assert auth_state.issued[1] == state.tokens[-1]


async def test_failed_refresh_falls_back_to_sign_in(backend: Server, auth: AuthServer, made: Made) -> None:
    """A refresh the Auth server refuses is followed by a fresh password sign-in, and the run passes."""
    _, url = backend
    auth_state, auth_url = auth
    auth_state.expires_in = 40
    clock = FakeClock(time.time())
    deps = made(url, {"monitor_user": signed_in(auth_url)}, clock=clock)
    assert Outcome.OK == (await run_probe(journey(), deps)).outcome
    auth_state.refresh_broken = True
    clock.advance(25)
    result = await run_probe(journey(), deps)
    assert Outcome.OK == result.outcome, result.message
    assert ["password", "refresh_token", "password"] == auth_state.grants


async def test_wrong_password_is_a_clear_sign_in_failure(backend: Server, auth: AuthServer, made: Made) -> None:
    """A wrong password fails the journey at step sign_in with the status and Auth's error code, no crash, no
    password; the backend is never called."""
    state, url = backend
    _, auth_url = auth
    deps = made(url, {"monitor_user": signed_in(auth_url, password="not-the-Password-77")})
    result = await run_probe(journey(), deps)
    assert (Outcome.IDENTITY_FAILED, "sign_in", 400, None) == (
        result.outcome, result.details["step"], result.details["sign_in_status"], result.status_code)
    assert (f"step sign_in: sign-in as {EMAIL} failed: 400 invalid_credentials (Invalid login credentials) (the "
            "auth server refused the identity: the monitor cannot act as the user)" == result.message)
    assert "not-the-Password-77" not in repr(result)
    assert [] == state.tokens


async def test_auth_server_down_is_a_sign_in_failure(backend: Server, made: Made) -> None:
    """Nothing listening at the Auth URL: connection_error at step sign_in, naming the identity's email."""
    _, url = backend
    deps = made(url, {"monitor_user": signed_in(f"http://127.0.0.1:{free_port()}")})
    result = await run_probe(journey(), deps)
    assert (Outcome.CONNECTION_ERROR, "sign_in") == (result.outcome, result.details["step"])
    assert result.message.startswith(f"step sign_in: sign-in as {EMAIL} failed: connection to 127.0.0.1 refused")


@pytest.mark.parametrize(("status", "outcome"), [(500, Outcome.SERVER_ERROR), (429, Outcome.RATE_LIMITED)])
async def test_auth_server_errors(backend: Server, auth: AuthServer, made: Made, status: int,
                                  outcome: Outcome) -> None:
    """Auth answering 5xx is server_error, 429 rate_limited, both at step sign_in with the code it gave."""
    _, url = backend
    auth_state, auth_url = auth
    auth_state.status = status
    deps = made(url, {"monitor_user": signed_in(auth_url)})
    result = await run_probe(journey(), deps)
    assert (outcome, "sign_in") == (result.outcome, result.details["step"])
    assert f"failed: {status} unexpected_failure (the auth server is failing)" in result.message


async def test_concurrent_checks_share_one_sign_in_and_one_failure(auth: AuthServer, made: Made) -> None:
    """Five checks at once: one password grant for all; with a wrong password, one attempt whose failure the
    checks that waited for it share (a wrong password is not a burst of sign-ins)."""
    auth_state, auth_url = auth
    deps = made("http://127.0.0.1:1", {"good": signed_in(auth_url), "bad": signed_in(auth_url, password="nope!")})
    good, bad = session_for(deps, "good"), session_for(deps, "bad")
    assert good is not None
    assert bad is not None
    tokens = await asyncio.gather(*(good.credential(_deadline()) for _ in range(5)))
    assert 1 == len({c.token for c in tokens if isinstance(c, Credential)})
    assert 5 == len(tokens)
    failures = await asyncio.gather(*(bad.credential(_deadline()) for _ in range(5)))
    assert all(isinstance(f, SignInFailed) for f in failures)
    assert ["password", "password"] == auth_state.grants
    assert PASSWORD not in repr(failures)


async def test_rotated_mint_secret_is_identity_failed_not_a_backend_failure(backend: Server, made: Made) -> None:
    """The project's JWT secret rotates under a minting identity that worked: each run after it is identity_failed
    at the first step that sends the token (the re-minted token too), never a server or status failure of the
    backend, and the secret appears in no result."""
    state, url = backend
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
    check = journey()
    assert Outcome.OK == (await run_probe(check, deps)).outcome
    state.jwt_secret = "rotated-project-secret-0123456789abcdef"
    for _ in range(2):  # the second run re-mints (the 401 invalidated the token) and is refused the same way
        result = await run_probe(check, deps)
        assert (Outcome.IDENTITY_FAILED, 401) == (result.outcome, result.status_code), result.message
        assert "monitor_user's token was refused" in result.message
        assert JWT_SECRET not in result.message + str(result.details)
    session = session_for(deps, "monitor_user")
    assert session is not None
    assert 2 == session.attempts, "the token refused in the first run after the rotation was re-minted"
