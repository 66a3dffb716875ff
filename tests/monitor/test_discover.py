"""Tests for monitor.discover: secured operations of an OpenAPI document become valid auth_contract checks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitor.core.config import load_config
from monitor.discover import discover_checks
from tests.support.daemon import command
from tests.support.servers import serve_asgi

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "PAM", "version": "1"},
    "paths": {
        "/health": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/api/v1/users/{user_id}/settings": {
            "parameters": [{"name": "user_id", "in": "path", "required": True,
                            "schema": {"type": "string", "format": "uuid"}}],
            "get": {"security": [{"HTTPBearer": []}]},
            "put": {"security": [{"HTTPBearer": []}]},
        },
        "/api/v1/trips/{trip_id}": {
            "delete": {"security": [{"HTTPBearer": []}],
                       "parameters": [{"name": "trip_id", "in": "path", "schema": {"type": "integer"}}]},
        },
        "/api/v1/public": {"get": {"security": [{}]}},
    },
}


def test_only_secured_operations_become_checks_with_filled_parameters() -> None:
    """Anonymous operations are skipped; path parameters get placeholders of the right type."""
    checks = discover_checks(SPEC, "backend")
    assert [
        ("api_v1_trips_trip_id_delete_unauth", "DELETE", {"trip_id": "0"}),
        ("api_v1_users_user_id_settings_get_unauth", "GET", {"user_id": "00000000-0000-0000-0000-000000000000"}),
        ("api_v1_users_user_id_settings_put_unauth", "PUT", {"user_id": "00000000-0000-0000-0000-000000000000"}),
    ] == [(c["name"], c["method"], c["params"]) for c in checks]


def test_discover_cli_output_is_a_valid_config_block(tmp_path: Path) -> None:
    """`pam-monitor discover --openapi URL` from a live server writes checks that load as a config."""
    app = Starlette(routes=[Route("/openapi.json", lambda request: JSONResponse(SPEC))])
    out = tmp_path / "checks.yaml"
    with serve_asgi(app) as base:
        done = subprocess.run(command("discover", "--openapi", f"{base}/openapi.json", "--output", str(out)),
                              capture_output=True, timeout=60)
    assert 0 == done.returncode, done.stderr
    generated = yaml.safe_load(out.read_text())
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"targets": {"backend": {"base_url": "http://127.0.0.1:8000"}},
                                           **generated}))
    assert 3 == len(load_config(config_path, environ={}).checks)


def test_discover_unusable_source_exits_two(tmp_path: Path) -> None:
    """A file that is not OpenAPI is a clear error and exit 2."""
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    done = subprocess.run(command("discover", "--openapi", str(bad)), capture_output=True, timeout=60)
    assert (2, f"pam-monitor discover: {bad} is not an OpenAPI document (no 'paths')\n") == (
        done.returncode, done.stderr.decode())
