"""The probes' verdicts on the demo backend, fault by fault (no runner, no alerts: tests/monitor/demo/test_alerts)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from monitor.core.config import AuthContractCheck, HttpCheck, VoiceCheck
from monitor.core.results import Outcome
from monitor.demo.tokens import demo_token
from tests.monitor.demo.app_support import (
    SECRET,
    SETTINGS,
    USER,
    set_fault,
)
from tests.support.targets import TIMING, DepsFactory, run_probe

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
