"""One contract for every check kind against every way a target can be broken: the expected outcome, a sentence
saying what happened, no crash, no secret, and an answer within the run's deadline.

The table is kinds x broken targets, on real sockets on 127.0.0.1: nothing listening, a name that cannot
resolve, a server that never answers, one that answers bytes of no protocol, one that closes in the middle of
its answer and one that resets the connection. A new kind in probes.REGISTRY must get a row in KINDS below.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

import probes
from monitor.core.config import Identity, Target
from monitor.core.results import Outcome
from probes.deps import Deps
from tests.support.servers import free_port
from tests.support.targets import TIMING, Breakage, Protocol, broken_handler, raw_tcp_server, run_probe

PASSWORD = "pw-Contract$ecret-41d7"
API_KEY = "api-key-CONTRACT-never-in-results"
HEADER_VALUE = "header-CONTRACT-never-in-results"
JWT_SECRET = "jwt-secret-CONTRACT-never-in-results"
IDENTITIES = {"u": Identity.model_validate({"mint": {"secret": JWT_SECRET, "sub": "u-1"}})}

KINDS: dict[str, tuple[dict[str, Any], str]] = {
    "http": ({"path": "/health"}, ""),
    "auth_contract": ({"path": "/api/v1/users/{user_id}/settings", "params": {"user_id": "u-1"}},
                      "GET /api/v1/users/{user_id}/settings: no token: "),
    "voice": ({"path": "/api/v1/pam/voice/health"}, "voice health: "),
    "postgrest": ({"required_tables": ["user_settings", "affiliate_sales"]}, "2 of 2 tables failed (user_settings: "),
    "db": ({"required_tables": ["user_settings"], "canary": True, "require_rls": True}, ""),
    "journey": ({"identity": "u", "steps": [{"name": "read", "path": "/api/v1/users/{sub}/settings"}]},
                "step read: "),
    "tenant_isolation": ({"identity": "u", "path": "/api/v1/users/{user_id}/settings",
                          "params": {"user_id": "u-2"}}, ""),
}
"""Per kind: the fields of a check of that kind (on target `t`), and how its message starts when the target is
broken (the request or table the failure is attributed to)."""

BREAKAGES = ("refused", "dns", "hang", "garbage", "closed", "reset")

EXPECTED: dict[tuple[Protocol, str], tuple[Outcome, str]] = {
    ("http", "refused"): (Outcome.CONNECTION_ERROR, "connection to 127.0.0.1 refused after "),
    ("http", "dns"): (Outcome.DNS_ERROR, "DNS lookup failed for pam-monitor-test.invalid"),
    ("http", "hang"): (Outcome.TIMEOUT, "waiting for the response"),
    ("http", "garbage"): (Outcome.INVALID_RESPONSE, "the answer is not HTTP"),
    ("http", "closed"): (Outcome.CONNECTION_ERROR, "server closed the connection while reading a 200 response"),
    ("http", "reset"): (Outcome.CONNECTION_ERROR, "connection to 127.0.0.1 reset by peer"),
    ("postgres", "refused"): (Outcome.CONNECTION_ERROR, "Connection refused"),
    ("postgres", "dns"): (Outcome.DNS_ERROR, "host name did not resolve during connect"),
    ("postgres", "hang"): (Outcome.TIMEOUT, "timed out during connect"),
    ("postgres", "garbage"): (Outcome.CONNECTION_ERROR, "expected authentication request from server"),
    ("postgres", "closed"): (Outcome.CONNECTION_ERROR, "server closed the connection unexpectedly"),
    ("postgres", "reset"): (Outcome.CONNECTION_ERROR, "server closed the connection unexpectedly"),
}
"""Per protocol and breakage: the outcome, and a part of the sentence naming what happened."""

HANG_TIMEOUT = 0.5
# Long enough that a failure the probe sees at once (refused, garbage...) is never confused with its deadline.
QUICK_TIMEOUT = 3.0
_TOOK = re.compile(r"after (\d+\.\d\d) s")


def _protocol(kind: str) -> Protocol:
    return "postgres" if probes.REGISTRY[kind].model.target_type == "dsn" else "http"


@contextlib.asynccontextmanager
async def broken_target(breakage: str, protocol: Protocol) -> AsyncIterator[tuple[str, int]]:
    """(host, port) of a target broken the named way, speaking (or failing to speak) `protocol`."""
    if breakage == "refused":
        yield "127.0.0.1", free_port()
    elif breakage == "dns":
        yield "pam-monitor-test.invalid", 5432  # RFC 6761: never resolves
    else:
        how: Breakage = breakage  # type: ignore[assignment]
        async with raw_tcp_server(broken_handler(how, protocol)) as url:
            yield "127.0.0.1", int(url.rsplit(":", 1)[1])


def _target(protocol: Protocol, host: str, port: int) -> Target:
    if protocol == "postgres":
        return Target(dsn=f"postgresql://monitor:{PASSWORD}@{host}:{port}/postgres")
    return Target.model_validate({"base_url": f"http://{host}:{port}", "api_key": API_KEY,
                                  "headers": {"X-Api-Key": HEADER_VALUE}})


def test_every_kind_has_a_row() -> None:
    """The contract covers every kind in the registry that has a target, and only those (a kind without one,
    `heartbeat`, is called by its job and has no target to break: tests/probes/test_heartbeat.py)."""
    targetless = {name for name, kind in probes.REGISTRY.items() if kind.model.target_type == "none"}
    assert {"heartbeat"} == targetless
    assert set(probes.REGISTRY) - targetless == set(KINDS)


@pytest.mark.parametrize("breakage", BREAKAGES)
@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_broken_target(kind: str, breakage: str) -> None:
    """The kind's probe reports a broken target as the expected outcome with a sentence that says what happened
    and to which request, claims no table either way, leaks no secret, and returns by the runner's hard stop
    (run_probe fails otherwise): at once when the failure is immediate, at the deadline when the target hangs."""
    record = probes.REGISTRY[kind]
    fields, prefix = KINDS[kind]
    protocol = _protocol(kind)
    outcome, says = EXPECTED[(protocol, breakage)]
    timeout = HANG_TIMEOUT if breakage == "hang" else QUICK_TIMEOUT
    check = record.model.model_validate(
        {"name": "contract", "kind": kind, "target": "t", **TIMING, "timeout": timeout, **fields}
    )
    loop = asyncio.get_running_loop()
    async with broken_target(breakage, protocol) as (host, port):
        deps = Deps(targets={"t": _target(protocol, host, port)}, body_limit=1 << 20, user_agent="pam-monitor-test",
                    identities=IDENTITIES)
        try:
            started = loop.time()
            result = await run_probe(check, deps)
            elapsed = loop.time() - started
        finally:
            await deps.aclose()

    assert (outcome, {}) == (result.outcome, dict(result.tables)), result.message
    assert outcome in record.outcomes
    assert result.message.startswith(prefix), result.message
    assert says in result.message
    assert re.fullmatch(r"[A-Za-z0-9][^\n]{20,}", result.message), result.message
    for secret in (PASSWORD, API_KEY, HEADER_VALUE, JWT_SECRET):
        assert secret not in repr(result)
    took = [float(seconds) for seconds in _TOOK.findall(result.message)]  # "after 0.47 s", when it says
    assert all(0.0 <= seconds <= timeout for seconds in took), result.message
    if breakage == "hang":
        assert timeout - 0.05 <= elapsed, f"a hang reported after {elapsed:.3f} s, before the {timeout} s deadline"
        assert took, result.message
        assert all(0.0 < seconds for seconds in took), result.message
    else:
        assert elapsed < timeout, f"an immediate failure took {elapsed:.3f} s, the whole {timeout} s timeout"
