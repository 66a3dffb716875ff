"""`discover --journeys`: a tenant_isolation check for every GET of a user's resource, with the identity to define;
the output loads as a config once the identity's variables are set, and its checks run."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitor.core.config import load_config
from monitor.core.results import Outcome
from monitor.discover import OTHER_USER, UNSET_SUB, isolation_checks, names_a_user
from monitor.runner import run_deadlines
from probes import REGISTRY
from probes.deps import build_deps
from tests.support.daemon import command
from tests.support.servers import serve_asgi
from tests.support.signed_in import JWT_SECRET, MONITOR_SUB, Backend, create_backend_app

USER = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "PAM", "version": "1"},
    "paths": {
        "/health": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/api/v1/users/{user_id}/settings": {
            "parameters": [USER],
            "get": {"security": [{"HTTPBearer": []}]},
            "put": {"security": [{"HTTPBearer": []}]},
        },
        "/api/v1/users/{userId}/trips/{trip_id}": {
            "get": {"parameters": [{"name": "userId", "in": "path", "schema": {"type": "string"}},
                                   {"name": "trip_id", "in": "path", "schema": {"type": "integer"}}]},
        },
        "/api/v1/trips/{trip_id}": {"get": {"parameters": [{"name": "trip_id", "in": "path",
                                                            "schema": {"type": "integer"}}]}},
    },
}


def test_user_id_parameters_are_recognised() -> None:
    """user_id, userId, uid and ..._user_id name a user; trip_id, a bare id and an owner_id that is not a uuid
    do not (a bare id does right after /users/)."""
    assert [True, True, True, False, True, False, False] == [
        names_a_user({"name": n}, f"/api/v1/things/{{{n}}}")
        for n in ("user_id", "userId", "uid", "owner_id", "target_user_id", "trip_id", "id")]
    assert names_a_user({"name": "id"}, "/api/v1/users/{id}")


def test_one_isolation_check_per_get_of_a_users_resource() -> None:
    """Each GET with a user-id path parameter becomes a tenant_isolation check asking for another user's id
    (other parameters get placeholders); PUT and paths without a user are left out."""
    assert [
        ("api_v1_users_userid_trips_trip_id_get_isolation", "/api/v1/users/{userId}/trips/{trip_id}",
         {"userId": OTHER_USER, "trip_id": "0"}),
        ("api_v1_users_user_id_settings_get_isolation", "/api/v1/users/{user_id}/settings", {"user_id": OTHER_USER}),
    ] == [(c["name"], c["path"], c["params"]) for c in isolation_checks(SPEC, "backend")]
    assert {("tenant_isolation", "monitor_user", "GET")} == {
        (c["kind"], c["identity"], c["method"]) for c in isolation_checks(SPEC, "backend")}


@pytest.mark.process
def test_cli_output_defines_the_identity_validates_and_runs(tmp_path: Path) -> None:
    """`discover --journeys` writes the identities block (with a comment saying to define it) and the checks;
    with a targets block and the identity's two variables, it loads, and the isolation check against a backend
    with an owner check is ok."""
    app = Starlette(routes=[Route("/openapi.json", lambda request: JSONResponse(SPEC))])
    out = tmp_path / "checks.yaml"
    with serve_asgi(app) as base:
        done = subprocess.run(command("discover", "--openapi", f"{base}/openapi.json", "--journeys",
                                      "--output", str(out)), capture_output=True, timeout=60)
    assert 0 == done.returncode, done.stderr
    text = out.read_text()
    assert "Define it:" in text
    assert "identities:\n  monitor_user:\n" in text
    state = Backend()
    with serve_asgi(create_backend_app(state)) as backend_url:
        config_path = tmp_path / "config.yaml"
        config_path.write_text(text)  # its target reads ${BACKEND_URL}: the document names no server
        config = load_config(config_path, environ={"SUPABASE_JWT_SECRET": JWT_SECRET,
                                                   "MONITOR_USER_ID": MONITOR_SUB, "BACKEND_URL": backend_url})
        kinds = [c.kind for c in config.checks]
        assert (2, 2) == (kinds.count("auth_contract"), kinds.count("tenant_isolation"))
        check = next(c for c in config.checks if c.name == "api_v1_users_user_id_settings_get_isolation")
        result = asyncio.run(_run(config, check))
    assert (Outcome.OK, 403) == (result.outcome, result.status_code), result.message
    assert 2 == len(state.tokens)  # the own-read control and the other user's resource, both signed in
    assert "5m" == yaml.safe_load(text)["identities"]["monitor_user"]["mint"]["ttl"]


async def _run(config: Any, check: Any) -> Any:
    deps = build_deps(config)
    try:
        deadline, _ = run_deadlines(check.timeout, asyncio.get_running_loop().time())
        return await REGISTRY[check.kind].probe(check, deps, deadline)
    finally:
        await deps.aclose()


@pytest.mark.process  # runs validate as a process
def test_output_validates_with_the_identity_variables_unset(tmp_path: Path) -> None:
    """Issue 17: `discover --journeys` output validates as written with SUPABASE_JWT_SECRET and MONITOR_USER_ID
    unset (placeholders after `:-` stand in, and a comment names the unset variables); the minted token carries
    Supabase's role and aud claims; set, the variables win."""
    app = Starlette(routes=[Route("/openapi.json", lambda request: JSONResponse(SPEC))])
    out = tmp_path / "checks.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("SUPABASE_JWT_SECRET", "MONITOR_USER_ID")}
    with serve_asgi(app) as base:
        done = subprocess.run(command("discover", "--openapi", f"{base}/openapi.json", "--journeys", "--base-url",
                                      "http://127.0.0.1:9", "--output", str(out)), capture_output=True, timeout=60,
                              env=env)
    assert 0 == done.returncode, done.stderr
    text = out.read_text()
    assert "# SUPABASE_JWT_SECRET and MONITOR_USER_ID were not set when this file was written" in text
    checked = subprocess.run(command("validate", "--config", str(out)), capture_output=True, text=True, timeout=60,
                             env=env)
    assert 0 == checked.returncode, checked.stderr
    mint = load_config(out, environ={}).identities["monitor_user"].mint
    assert mint is not None
    assert ({"role": "authenticated", "aud": "authenticated"}, UNSET_SUB) == (mint.claims, mint.sub)
    mint = load_config(out, environ={"SUPABASE_JWT_SECRET": JWT_SECRET, "MONITOR_USER_ID": MONITOR_SUB}).identities[
        "monitor_user"].mint
    assert mint is not None
    assert (JWT_SECRET, MONITOR_SUB) == (mint.secret.get_secret_value(), mint.sub)
