"""Tests for monitor.discover: an OpenAPI document becomes a whole config that validates and runs as it stands,
with forged tokens impersonating the user in the path and minimal request bodies."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from monitor.core.config import load_config
from monitor.discover import discover_checks, example_value, names_a_user
from tests.support.backends import SETTINGS_OPENAPI, Flaw, settings_app
from tests.support.daemon import command
from tests.support.servers import serve_asgi

pytestmark = pytest.mark.process  # runs the CLI, the daemon or a stand-in as a process

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
                       "parameters": [{"name": "trip_id", "in": "path", "schema": {"type": "integer"}},
                                      {"name": "force", "in": "query", "required": True,
                                       "schema": {"type": "boolean"}},
                                      {"name": "reason", "in": "query", "schema": {"type": "string"}}]},
        },
        "/api/v1/public": {"get": {"security": [{}]}},
    },
}


def test_only_secured_operations_become_checks_with_filled_parameters() -> None:
    """Anonymous operations are skipped; path parameters get placeholders of the right type, required query
    parameters a value (optional ones none); a user id in the path goes into the forged tokens' sub."""
    checks = discover_checks(SPEC, "backend")
    assert [
        ("api_v1_trips_trip_id_delete_unauth", "DELETE", {"trip_id": "0"}, {"force": "false"}, None),
        ("api_v1_users_user_id_settings_get_unauth", "GET", {"user_id": "00000000-0000-0000-0000-000000000000"},
         None, {"sub": "{user_id}"}),
        ("api_v1_users_user_id_settings_put_unauth", "PUT", {"user_id": "00000000-0000-0000-0000-000000000000"},
         None, {"sub": "{user_id}"}),
    ] == [(c["name"], c["method"], c["params"], c.get("query"), c.get("forged_claims")) for c in checks]


UUID = {"type": "string", "format": "uuid"}


@pytest.mark.parametrize(("name", "schema", "path", "user"), [
    ("user_id", UUID, "/users/{user_id}", True),
    ("userId", {"type": "string"}, "/settings/{userId}", True),
    ("uid", {"type": "string"}, "/x/{uid}", True),
    ("owner_id", UUID, "/trips/{owner_id}", True),
    ("memberId", UUID, "/groups/g/{memberId}", True),
    ("id", UUID, "/api/v1/users/{id}/settings", True),
    ("owner_id", {"type": "integer"}, "/trips/{owner_id}", False),
    ("trip_id", UUID, "/trips/{trip_id}", False),
    ("id", UUID, "/api/v1/trips/{id}", False),
    ("name", {"type": "string"}, "/users/{name}", False),
])
def test_which_parameters_name_a_user(name: str, schema: dict[str, Any], path: str, user: bool) -> None:
    """user_id, userId, uid, an `id` right after /users/, and a uuid `*_id`/`*Id` naming a person hold a user's
    id; other ids do not."""
    assert user == names_a_user({"name": name, "in": "path", "schema": schema}, path)


DOC: dict[str, Any] = {"components": {"schemas": {
    "Base": {"type": "object", "required": ["id"], "properties": {"id": UUID, "note": {"type": "string"}}},
    "Trip": {"allOf": [{"$ref": "#/components/schemas/Base"},
                       {"type": "object", "required": ["days"], "properties": {"days": {"type": "integer",
                                                                                         "minimum": 1}}}]},
    "Node": {"type": "object", "required": ["child"], "properties": {"child": {"$ref": "#/components/schemas/Node"}}},
}}}


@pytest.mark.parametrize(("schema", "value"), [
    ({"type": "object", "required": ["voice_enabled", "theme"], "properties": {
        "voice_enabled": {"type": "boolean"}, "theme": {"type": "string", "enum": ["dark", "light"]},
        "volume": {"type": "number"}}}, {"voice_enabled": False, "theme": "dark"}),
    ({"$ref": "#/components/schemas/Trip"}, {"id": "00000000-0000-0000-0000-000000000000", "days": 1}),
    ({"type": "object", "properties": {"a": {"type": "string"}}}, {}),
    ({"type": ["string", "null"], "format": "date-time"}, "1970-01-01T00:00:00Z"),
    ({"anyOf": [{"type": "null"}, {"type": "string", "format": "email"}]}, "monitor@example.com"),
    ({"type": "array", "minItems": 2, "items": {"type": "integer", "exclusiveMinimum": 4}}, [5, 5]),
    ({"type": "integer", "minimum": 3, "exclusiveMinimum": True}, 4),
    ({"type": "string", "minLength": 14, "maxLength": 20}, "pam-monitorxxx"),
    ({"type": "string", "maxLength": 3}, "pam"),
    ({"type": "object", "required": ["n"], "properties": {"n": {"type": "number", "example": 2.5}}}, {"n": 2.5}),
    ({"type": "string", "default": "fr"}, "fr"),
    ({"const": "v1"}, "v1"),
])
def test_minimal_bodies_from_schemas(schema: dict[str, Any], value: Any) -> None:
    """A request body is a minimal valid example: required properties only, $ref/allOf/anyOf followed, an
    example, default, const or enum used when given, formats and bounds respected."""
    assert value == example_value(DOC, schema)


def test_a_recursive_schema_ends() -> None:
    """A schema that requires itself is cut at a bounded depth instead of recursing forever."""
    value = example_value(DOC, {"$ref": "#/components/schemas/Node"})
    depth = 0
    while isinstance(value, dict):
        value, depth = value["child"], depth + 1
    assert (None, True) == (value, 3 <= depth <= 8)


def discover(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command("discover", *args), capture_output=True, text=True, timeout=60, cwd=cwd)


def check_config(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`pam-monitor check` on a discovered config, its target's max_rate raised from the environment (the file is
    run unchanged): the written 10/m would make two auth_contract runs of 5 requests take about 40 s."""
    env = {**os.environ, "PAM_MONITOR_TARGETS__BACKEND__MAX_RATE": "600/m"}
    return subprocess.run(command("check", "--config", str(config), "--format", "json"), capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env)


@pytest.mark.parametrize(("flaw", "code", "outcomes"), [
    ("none", 0, ["ok", "ok"]),
    ("unverified_fallback", 1, ["auth_bypass", "auth_bypass"]),
    ("routes_after_auth", 1, ["auth_bypass", "auth_bypass"]),
])
def test_discovered_config_runs_as_it_stands(tmp_path: Path, flaw: Flaw, code: int, outcomes: list[str]) -> None:
    """Given only a backend's base URL, discover finds /openapi.json and writes a config whose target is that
    backend; `pam-monitor check` runs it unchanged: the correct backend is ok, the flawed ones are auth_bypass
    (the PUT carries a valid body, so the flaw answers, not body validation)."""
    out = tmp_path / "pam-monitor.yaml"
    with serve_asgi(settings_app(flaw)) as base:
        done = discover("--openapi", base, "--output", str(out), cwd=tmp_path)
        assert (0, "wrote 2 checks to " + str(out) + "\n") == (done.returncode, done.stderr)
        config = load_config(out, environ={})
        ran = check_config(out, tmp_path)
    assert (base, {"voice_enabled": False}) == (config.targets["backend"].base_url, config.checks[1].json_body)
    assert code == ran.returncode, ran.stderr
    assert outcomes == [c["outcome"] for c in json.loads(ran.stdout)["checks"]]


def test_base_url_flag_and_document_servers(tmp_path: Path) -> None:
    """The target is --base-url when given, else the document's first server (a relative one resolved against
    where the document was found)."""
    doc = {**SETTINGS_OPENAPI, "servers": [{"url": "/api"}]}
    app = Starlette(routes=[Route("/docs/openapi.json", lambda request: JSONResponse(doc))])
    with serve_asgi(app) as base:
        from_servers = discover("--openapi", f"{base}/docs/openapi.json", cwd=tmp_path)
        from_flag = discover("--openapi", base, "--base-url", "https://api.example.com/", cwd=tmp_path)
    assert f"{base}/api" == yaml.safe_load(from_servers.stdout)["targets"]["backend"]["base_url"]
    assert "https://api.example.com" == yaml.safe_load(from_flag.stdout)["targets"]["backend"]["base_url"]


def test_without_a_known_base_url_the_config_asks_for_backend_url(tmp_path: Path) -> None:
    """A document file naming no server gives `${BACKEND_URL}` with a comment saying to set it; with it set, the
    file validates as it stands."""
    spec = tmp_path / "openapi.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "pam-monitor.yaml"
    done = discover("--openapi", str(spec), "--target", "api", "-o", str(out), cwd=tmp_path)
    text = out.read_text()
    assert 0 == done.returncode, done.stderr
    assert "base_url: ${BACKEND_URL}" in text
    assert "# BACKEND_URL: the document names no server and --base-url was not given; set BACKEND_URL" in text
    config = load_config(out, environ={"BACKEND_URL": "http://127.0.0.1:8000"})
    assert (3, "http://127.0.0.1:8000") == (len(config.checks), config.targets["api"].base_url)


def test_a_base_url_without_a_document_lists_every_path_tried(tmp_path: Path) -> None:
    """A server with no OpenAPI document anywhere usual: exit 2, naming each path tried and its answer."""
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("<html>hello</html>"))])
    with serve_asgi(app) as base:
        done = discover("--openapi", base, cwd=tmp_path)
    assert 2 == done.returncode
    assert (
        f"pam-monitor discover: no OpenAPI document found: {base} is not an OpenAPI document (no 'paths'); "
        f"GET {base}/openapi.json answered 404, expected 200; GET {base}/docs/openapi.json answered 404, expected "
        f"200; GET {base}/api/openapi.json answered 404, expected 200; GET {base}/swagger.json answered 404, "
        "expected 200\n") == done.stderr


def test_discover_unusable_source_exits_two(tmp_path: Path) -> None:
    """A file that is not OpenAPI is a clear error and exit 2."""
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    done = subprocess.run(command("discover", "--openapi", str(bad)), capture_output=True, timeout=60)
    assert (2, f"pam-monitor discover: {bad} is not an OpenAPI document (no 'paths')\n") == (
        done.returncode, done.stderr.decode())


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "a: " + "[" * 100_000 + "]" * 100_000])
def test_discover_a_document_nested_100k_deep_exits_two(tmp_path: Path, text: str) -> None:
    """JSON or YAML nested 100,000 levels is one clear line and exit 2, never a RecursionError traceback."""
    bad = tmp_path / "deep.json"
    bad.write_text(text)
    done = subprocess.run(command("discover", "--openapi", str(bad)), capture_output=True, timeout=60)
    assert (2, f"pam-monitor discover: {bad} is nested too deeply to be an OpenAPI document\n") == (
        done.returncode, done.stderr.decode())


def test_cors_origin_puts_cors_on_every_check_and_counts_the_preflight(tmp_path: Path) -> None:
    """`render(cors_origin=...)` (discover --cors-origin) gives every generated check `cors` with that origin,
    credentials and Authorization, the file still loads, and the pacing comment counts the preflight requests."""
    from monitor.discover import render

    plain, _ = render(SPEC, "openapi.json", "backend", "http://127.0.0.1:1")
    text, count = render(SPEC, "openapi.json", "backend", "http://127.0.0.1:1", cors_origin="https://app.example.com")
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(text)
    config = load_config(path)
    assert count == len(config.checks) == 3
    assert {("https://app.example.com", True, ("Authorization",))} == {
        (c.cors.origin, c.cors.credentials, tuple(c.cors.headers)) for c in config.checks  # type: ignore[union-attr]
    }
    assert "(15 requests)" in plain
    assert "(18 requests)" in text
