"""No identity secret, password, API key, access or refresh token in any output of the signed-in checks: results,
the /status shape, alert annotations, logs; even when the target echoes credentials or the sign-in fails."""

from __future__ import annotations

import json
from typing import Any

import structlog

from alerts.judge.rules import RULES
from alerts.labels import build_annotations
from monitor.core.config import TenantIsolationCheck
from monitor.core.results import ProbeResult, Result
from probes.identity import session_for
from tests.probes.signed_in import PASSWORD, Made, journey, minted, signed_in
from tests.support.signed_in import JWT_SECRET, MONITOR_SUB, OTHER_SUB, Auth, Backend
from tests.support.targets import TIMING, run_probe

ECHO = [{"name": "csrf", "path": "/api/auth/csrf-token", "capture": {"csrf": "json.csrf_token"}},
        {"name": "echo", "path": "/api/debug/echo-auth", "headers": {"X-CSRF-Token": "{csrf}"}}]


def outputs(name: str, kind: str, observed: ProbeResult) -> list[Any]:
    """What leaves the daemon for one result: /status's entry and every alert's annotations."""
    result = Result(name, kind, observed, duration_s=0.1, started_at=0.0, finished_at=0.0)
    return [result.to_status(), *(build_annotations(result, RULES[alertname].runbook, "t", "s") for alertname in RULES)]


async def test_no_secret_or_token_in_results_status_annotations_or_logs(
    backend: tuple[Backend, str], auth: tuple[Auth, str], made: Made
) -> None:
    """Runs that pass, fail at a step whose body echoes the Authorization header and cookies, fail to sign in
    (wrong password), and check isolation: none of their outputs or log events holds a secret or a token."""
    state, url = backend
    auth_state, auth_url = auth
    deps = made(url, {"minted": minted(MONITOR_SUB), "signed": signed_in(auth_url),
                      "wrong": signed_in(auth_url, password="Wrong-pw-3391")})
    shown: list[Any] = []
    with structlog.testing.capture_logs() as logs:
        for who in ("minted", "signed"):
            for steps in (None, ECHO):
                check = journey(steps, identity=who)
                shown += outputs(check.name, "journey", await run_probe(check, deps))
        failed = await run_probe(journey(identity="wrong"), deps)
        assert "sign_in" == failed.details["step"]
        shown += outputs("j", "journey", failed)
        isolation = TenantIsolationCheck.model_validate(
            {"name": "iso", "kind": "tenant_isolation", "target": "backend", "identity": "signed", **TIMING,
             "path": "/api/v1/users/{user_id}/settings", "params": {"user_id": OTHER_SUB}})
        shown += outputs("iso", "tenant_isolation", await run_probe(isolation, deps))
    text = json.dumps(shown, default=str) + repr(logs)

    sessions = [session_for(deps, name) for name in ("minted", "signed")]
    tokens = {s.current.token for s in sessions if s is not None and s.current is not None}
    refresh = {s.refresh_token for s in sessions if s is not None and s.refresh_token}
    secrets = {JWT_SECRET, PASSWORD, "Wrong-pw-3391", auth_state.api_key, *state.tokens, *auth_state.issued,
               *tokens, *refresh, *(cookie for sent in state.cookies for cookie in sent.values())}
    assert len(tokens) == 2
    assert refresh
    assert "Bearer **********" in text, "the echoing endpoint was not exercised"
    assert [] == sorted(s[:12] + "..." for s in secrets if s in text)
