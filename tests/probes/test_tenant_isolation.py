"""The tenant_isolation kind: as a signed-in identity, another user's settings must be refused; a backend that
serves them (the owner check gone) is auth_bypass."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.core.config import TenantIsolationCheck
from monitor.core.results import Outcome
from probes.tenant_isolation import resource_noun
from tests.probes.signed_in import Made, example_config, minted
from tests.support.signed_in import JWT_SECRET, MONITOR_SUB, OTHER_SUB, Backend
from tests.support.targets import TIMING, run_probe

Server = tuple[Backend, str]


def isolation(**fields: Any) -> TenantIsolationCheck:
    """A tenant_isolation check on target `backend` as monitor_user."""
    raw = {"name": "settings_isolation", "kind": "tenant_isolation", "target": "backend", "identity": "monitor_user",
           **TIMING, "path": "/api/v1/users/{user_id}/settings", "params": {"user_id": OTHER_SUB}, **fields}
    return TenantIsolationCheck.model_validate(raw)


async def test_example_passes_when_the_owner_check_refuses(backend: Server, made: Made) -> None:
    """examples/journeys.yaml's settings_isolation against a backend with an owner check: 403 is ok."""
    state, url = backend
    config = example_config()
    check = next(c for c in config.checks if c.name == "settings_isolation")
    deps = made(url, dict(config.identities))
    result = await run_probe(check, deps)
    assert (Outcome.OK, 403) == (result.outcome, result.status_code), result.message
    assert result.message.startswith("GET /api/v1/users/{user_id}/settings: monitor_user was refused another "
                                     "user's settings: 403 after ")
    assert "(its own settings: 200)" in result.message
    assert 2 == len(state.tokens), "the identity's token was not sent with both reads (own and other)"


async def test_served_to_another_tenant_is_auth_bypass(backend: Server, made: Made) -> None:
    """The owner check removed: the other user's settings come back 200, which is auth_bypass; their content
    is not copied into the result."""
    state, url = backend
    state.tenant_leak = True
    state.settings[OTHER_SUB] = {"home_address": "12 Private Road"}
    deps = made(url, {"monitor_user": minted(MONITOR_SUB)})
    result = await run_probe(isolation(), deps)
    assert (Outcome.AUTH_BYPASS, 200) == (result.outcome, result.status_code)
    assert result.message.startswith("GET /api/v1/users/{user_id}/settings: monitor_user read another user's "
                                     "settings: 200 after "), result.message
    assert "Private Road" not in repr(result)
    assert JWT_SECRET not in repr(result)


@pytest.mark.parametrize(("query", "outcome", "says"), [
    ({"status": "404"}, Outcome.OK, "refused another user's respond: 404"),
    ({"status": "401"}, Outcome.OK, "refused another user's respond: 401"),
    ({"status": "500", "body": 'relation "user_settings" does not exist'}, Outcome.TABLE_MISSING,
     "expected 401|403|404, got 500 after "),
    ({"status": "502"}, Outcome.SERVER_ERROR, "expected 401|403|404, got 502 after "),
    ({"status": "429"}, Outcome.RATE_LIMITED, "rate-limited: 429 after "),
    ({"status": "400"}, Outcome.UNEXPECTED_STATUS, "expected 401|403|404, got 400 after "),
    ({"status": "204"}, Outcome.AUTH_BYPASS, "read another user's respond: 204"),
])
async def test_statuses(base_url: str, made: Made, query: dict[str, str], outcome: Outcome, says: str) -> None:
    """401/403/404 ok; 2xx auth_bypass; 5xx server_error (table_missing when a relation is named); 429
    rate_limited; other statuses unexpected_status. (/respond has no user in its path, so the own-read control is
    off here: these cases judge the other read's status alone.)"""
    deps = made(base_url, {"monitor_user": minted(MONITOR_SUB)})
    result = await run_probe(isolation(path="/respond", params={}, query=query, own_read=False), deps)
    assert outcome == result.outcome, result.message
    assert says in result.message


def test_resource_noun() -> None:
    """Sentences name the resource by the path's last segment that is not a placeholder."""
    assert "settings" == resource_noun("/api/v1/users/{user_id}/settings")
    assert "users" == resource_noun("/api/v1/users/{user_id}")
    assert "resource" == resource_noun("/{user_id}")
