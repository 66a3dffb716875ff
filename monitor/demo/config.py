"""The config `pam-monitor demo` writes and runs: the README's checks plus the signed-in journeys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.demo.postgrest import FAULT_TABLE
from monitor.demo.schema import SEED_TABLES
from monitor.demo.tokens import CSRF_COOKIE, CSRF_HEADER, FRONTEND_ORIGIN

SECRET_VAR = "PAM_DEMO_JWT_SECRET"  # noqa: S105 - the name of a variable, not a secret
"""The environment variable holding the demo backend's JWT secret (the identity mints its tokens with it)."""

DSN_VAR = "PAM_DEMO_DATABASE_URL"
"""The environment variable holding the demo database's DSN."""

CSRF_VAR = "PAM_DEMO_CSRF_TOKEN"
"""The environment variable holding a CSRF token of the demo backend, which the anonymous PUT check sends (as
header and cookie) so that its answer comes from the auth layer, not from the CSRF check in front of the write."""

MONITOR_USER = "7c0f3a8e-0000-4000-8000-000000000001"
"""The demo's dedicated monitoring user (the `sub` of identity monitor_user, as in the README)."""

OTHER_USER = "00000000-0000-4000-8000-000000000002"
"""Another user, whose settings the monitoring user must not be able to read (settings_isolation)."""

ANY_USER = "00000000-0000-0000-0000-000000000000"
"""The user id in the anonymous checks' path: the auth layer must refuse before it is looked up."""

SETTINGS_PATH = "/api/v1/users/{user_id}/settings"
_MINE = "/api/v1/users/{sub}/settings"


def _journey() -> dict[str, Any]:
    """The settings page as a signed-in user sees it: CSRF token, read, write a fresh nonce, read it back."""
    return {
        "name": "settings_journey", "kind": "journey", "target": "backend", "identity": "monitor_user",
        "steps": [
            {"name": "csrf", "method": "GET", "path": "/api/auth/csrf-token", "expect": {"status": [200]},
             "capture": {"csrf": "json.csrf_token"}},
            {"name": "read", "method": "GET", "path": _MINE, "expect": {"status": [200]}},
            {"name": "write", "method": "PUT", "path": _MINE, "headers": {"X-CSRF-Token": "{csrf}"},
             "json": {"monitor_nonce": "{run_id}"}, "expect": {"status": [200]}},
            {"name": "read_back", "method": "GET", "path": _MINE,
             "expect": {"status": [200], "json": {"monitor_nonce": "{run_id}"}}},
        ],
    }


def demo_config(*, target: str, listen: str, state_dir: Path, interval: float, with_db: bool,
                alertmanager: str | None, schema: str = "public", as_role: bool = True,
                migrations_dir: Path | None = None) -> dict[str, Any]:
    """The demo's config document; secrets stay in environment variables, referenced as ${VAR}.

    `schema` holds the demo's tables (the db checks name them `schema.table` outside `public`); `as_role` False
    leaves out db_as_user (no role `authenticated` the demo may use on that database). `migrations_dir` (only on
    the demo's own cluster, with the database) adds db_migrations on that directory and rest_api, the postgrest
    check of the demo's PostgREST stand-in, consulting the database's catalogue.
    """
    timeout = min(2.0, interval / 2)
    secret = f"${{{SECRET_VAR}}}"
    # Forged tokens impersonate the user in the path, so an owner check cannot hide a backend that decodes tokens
    # without verifying them.
    anonymous: dict[str, Any] = {"target": "backend", "kind": "auth_contract", "path": SETTINGS_PATH,
                                 "params": {"user_id": ANY_USER}, "jwt_secret": secret,
                                 "forged_claims": {"sub": "{user_id}"}}
    checks: list[dict[str, Any]] = [
        {"name": "backend_health", "kind": "http", "target": "backend", "path": "/health",
         "expect": {"status": [200], "json": {"status": "healthy"}}},
        {"name": "voice_health", "kind": "voice", "target": "backend", "path": "/api/v1/pam/voice/health",
         "expect": {"json": {"status": "healthy"}},
         "synthesize": {"method": "POST", "path": "/api/v1/pam/voice/tts", "json": {"text": "health check"},
                        "min_bytes": 1000}},
        # What anonymous callers and forged tokens get: all the seed incident's engineers looked at.
        {"name": "settings_get_unauth", "method": "GET", **anonymous,
         # As the frontend's browser reads the refusal (it must, to send its user to log in): cors_drop_origin.
         "cors": {"origin": FRONTEND_ORIGIN, "credentials": True, "headers": ["Authorization", CSRF_HEADER],
                  "methods": ["PUT"]}},
        {"name": "settings_put_unauth", "method": "PUT", **anonymous, "json": {"voice_enabled": True},
         "headers": {CSRF_HEADER: f"${{{CSRF_VAR}}}", "Cookie": f"{CSRF_COOKIE}=${{{CSRF_VAR}}}"}},
        # What a signed-in user gets: the check nobody ran during the seed incident.
        _journey(),
        {"name": "settings_isolation", "kind": "tenant_isolation", "target": "backend", "identity": "monitor_user",
         "method": "GET", "path": SETTINGS_PATH, "params": {"user_id": OTHER_USER}},
    ]
    targets: dict[str, Any] = {"backend": {"base_url": target, "health_check": "backend_health"}}
    if with_db:
        targets["database"] = {"dsn": f"${{{DSN_VAR}}}"}
        tables = [table if schema == "public" else f"{schema}.{table}" for table in SEED_TABLES]
        checks.append(
            {"name": "db_roundtrip", "kind": "db", "target": "database", "canary": True, "require_rls": True,
             "required_tables": tables,
             "required_columns": {tables[0]: ["user_id", "voice_enabled", "created_at", "updated_at"]}})
        if as_role:
            # What the application's users can read: the role and policies PostgREST would use for them.
            checks.append({"name": "db_as_user", "kind": "db", "target": "database", "as_role": "authenticated",
                           "identity": "monitor_user", "required_tables": tables})
        if migrations_dir is not None:
            checks.append({"name": "db_migrations", "kind": "db", "target": "database",
                           "migrations": {"dir": str(migrations_dir)}})
            # A target of its own: PostgREST is another service than the backend (its health is not the API's).
            targets["rest"] = {"base_url": target}
            checks.append({"name": "rest_api", "kind": "postgrest", "target": "rest", "database": "database",
                           "required_tables": [FAULT_TABLE]})
    sinks = [{"kind": "alertmanager", "url": alertmanager}] if alertmanager else []
    return {
        "service": "pam-backend-demo",
        "listen": listen,
        "state_dir": str(state_dir),
        "shutdown_timeout": "5s",
        "defaults": {"interval": f"{interval:g}s", "timeout": f"{timeout:g}s",
                     "failure_threshold": 2, "success_threshold": 2},
        "identities": {
            "monitor_user": {"mint": {"secret": secret, "sub": MONITOR_USER, "ttl": "5m",
                                      "claims": {"role": "authenticated", "aud": "authenticated"}}},
        },
        "targets": targets,
        "checks": checks,
        "alerts": {"sinks": sinks, "resend_interval": "30s"},
    }


def variables(config: dict[str, Any], *, secret: str, csrf: str, dsn: str | None) -> dict[str, str]:
    """The environment variables the written config reads, with their values (what the banner exports)."""
    out = {SECRET_VAR: secret, CSRF_VAR: csrf}
    if dsn is not None and "database" in config["targets"]:
        out[DSN_VAR] = dsn
    return out


__all__ = ["ANY_USER", "CSRF_VAR", "DSN_VAR", "MONITOR_USER", "OTHER_USER", "SECRET_VAR", "SETTINGS_PATH",
           "demo_config", "variables"]
