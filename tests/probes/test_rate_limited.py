"""A rate limiter's answer (429, or 503 with Retry-After) is `rate_limited` for every HTTP kind: inconclusive,
never unexpected_status or server_error, with the wait the target asked for in `retry_after`. The limiter is a
real fixed-window one in front of real stand-ins (tests/support/backends.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from monitor.core.config import PostgrestCheck, Target, VoiceCheck
from monitor.core.results import Outcome
from probes.deps import Deps
from tests.support.backends import RateLimited, VoiceSystem
from tests.support.fake_postgrest import FakePostgrest
from tests.support.servers import serve_asgi
from tests.support.targets import TIMING, DepsFactory, create_target_app, run_probe
from tests.support.targets import http_check as make_check


def limited_message(result: Any) -> bool:
    return re.fullmatch(r"GET /respond: rate limited: expected 200, got 429 after \d\.\d\d s, retry after \d+ s; "
                        r"this run says nothing about the endpoint", result.message) is not None


async def test_http_429_after_the_limit_is_rate_limited(make_deps: DepsFactory) -> None:
    """One request a minute: the first run is ok, the second is rate_limited with the limiter's wait."""
    with serve_asgi(RateLimited(create_target_app(), limit=1, window=60)) as url:
        deps = make_deps(url)
        first = await run_probe(make_check(), deps)
        second = await run_probe(make_check(), deps)
    assert (Outcome.OK, Outcome.RATE_LIMITED, 429) == (first.outcome, second.outcome, second.status_code)
    assert second.retry_after is not None
    assert 50 <= second.retry_after <= 60, second.retry_after
    assert limited_message(second), second.message


async def test_http_503_with_retry_after_is_rate_limited_without_is_server_error(make_deps: DepsFactory) -> None:
    """A 503 with Retry-After (an overloaded gateway) is rate_limited; a bare 503 stays server_error."""
    with serve_asgi(RateLimited(create_target_app(), limit=0, status=503, http_date=True)) as url:
        limited = await run_probe(make_check(), make_deps(url))
    with serve_asgi(create_target_app()) as url:
        bare = await run_probe(make_check(query={"status": "503"}), make_deps(url))
    assert (Outcome.RATE_LIMITED, 503) == (limited.outcome, limited.status_code)
    assert limited.retry_after is not None
    assert 55 <= limited.retry_after <= 61, limited.retry_after
    assert (Outcome.SERVER_ERROR, None) == (bare.outcome, bare.retry_after)


async def test_an_expected_429_is_judged_like_any_expected_status(make_deps: DepsFactory) -> None:
    """A check that expects 429 (it tests the limiter itself) is ok when it gets one."""
    with serve_asgi(RateLimited(create_target_app(), limit=0)) as url:
        result = await run_probe(make_check(expect={"status": [429]}), make_deps(url))
    assert (Outcome.OK, 429) == (result.outcome, result.status_code)


def voice_check() -> VoiceCheck:
    return VoiceCheck.model_validate({
        "name": "voice", "kind": "voice", "target": "t", "path": "/voice/health", **TIMING,
        "synthesize": {"path": "/voice/tts", "json": {"text": "health check"}},
    })


@pytest.mark.parametrize(("only_path", "synthesis", "outcome", "health", "tts"), [
    (None, "works", Outcome.RATE_LIMITED, "rate_limited", "rate_limited"),
    ("/voice/tts", "works", Outcome.RATE_LIMITED, "ok", "rate_limited"),
    ("/voice/health", "broken", Outcome.SERVER_ERROR, "rate_limited", "server_error"),
])
async def test_voice_parts_rate_limited(make_deps: DepsFactory, only_path: str | None, synthesis: Any,
                                        outcome: Outcome, health: str, tts: str) -> None:
    """A limited part is rate_limited; the check is rate_limited only when nothing definitive was found in the
    other part (a broken synthesis is still server_error); retry_after is set whenever a part was limited."""
    system = VoiceSystem(synthesis=synthesis)
    with serve_asgi(RateLimited(system.app(), limit=0, only_path=only_path)) as url:
        result = await run_probe(voice_check(), make_deps(url))
    assert (outcome, health, tts) == (result.outcome, result.details["health"]["outcome"],
                                      result.details["synthesis"]["outcome"]), result.message
    assert result.retry_after is not None
    assert 50 <= result.retry_after <= 60
    assert "rate limited: expected" in result.message


SEED = ["user_settings", "affiliate_sales", "user_wishlists"]


async def run_postgrest(fake: FakePostgrest, limiter: dict[str, Any]) -> Any:
    with serve_asgi(RateLimited(fake.app(), **limiter)) as url:
        deps = Deps(targets={"supabase": Target(base_url=url)}, body_limit=1 << 20, user_agent="pam-monitor-test")
        try:
            check = PostgrestCheck.model_validate({"name": "rest", "kind": "postgrest", "target": "supabase",
                                                   **TIMING, "required_tables": SEED})
            return await run_probe(check, deps)
        finally:
            await deps.aclose()


async def test_postgrest_limited_tables() -> None:
    """Every table limited is rate_limited naming them, with the wait; nothing is claimed about their presence."""
    result = await run_postgrest(FakePostgrest(tables={"public": set(SEED)}), {"limit": 0})
    assert (Outcome.RATE_LIMITED, 429, {}) == (result.outcome, result.status_code, dict(result.tables))
    assert result.message.startswith("rate limited on 3 of 3 tables, nothing learned about them (user_settings: "
                                     "429, rate limited (retry after "), result.message
    assert result.retry_after is not None
    assert 50 <= result.retry_after <= 60


async def test_postgrest_missing_table_outranks_a_limited_one() -> None:
    """One table limited, another missing: table_missing is definitive and wins; the limited one is listed."""
    fake = FakePostgrest(tables={"public": {"user_settings", "affiliate_sales"}})
    result = await run_postgrest(fake, {"limit": 0, "only_path": "/rest/v1/user_settings"})
    assert Outcome.TABLE_MISSING == result.outcome
    assert {"affiliate_sales": True, "user_wishlists": False} == dict(result.tables)
    assert "user_settings: 429, rate limited" in result.message

