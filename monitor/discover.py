"""`pam-monitor discover`: turn an OpenAPI document into auth_contract checks for every secured operation, and
with `--journeys` a tenant_isolation check for every GET of a user's resource."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

_METHODS = ("get", "put", "post", "patch", "delete")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
OTHER_USER = "00000000-0000-4000-8000-000000000002"
"""The user id a tenant_isolation check asks for: someone who is not the monitoring user."""
IDENTITY = "monitor_user"
IDENTITIES_BLOCK = f"""\
# --journeys: the tenant_isolation checks below act as a signed-in monitoring user, `{IDENTITY}`. Define it:
# a dedicated user of the project (never a real customer), its token minted with the project's JWT secret, or
# signed in for real with  sign_in: {{url: "https://<ref>.supabase.co/auth/v1", api_key: "${{SUPABASE_ANON_KEY}}",
# email: monitor@example.com, password: "${{MONITOR_PASSWORD}}"}}  instead of mint.
identities:
  {IDENTITY}:
    mint: {{secret: "${{SUPABASE_JWT_SECRET}}", sub: "${{MONITOR_USER_ID}}", ttl: 5m}}
"""


class DiscoverError(Exception):
    """The document could not be read or is not OpenAPI."""


def load_document(source: str, timeout: float = 10.0) -> dict[str, Any]:
    """Read an OpenAPI document (JSON or YAML) from a URL or a file."""
    try:
        if re.match(r"^https?://", source):
            response = httpx.get(source, timeout=timeout, follow_redirects=True)
            if response.status_code != 200:
                raise DiscoverError(f"GET {source} answered {response.status_code}, expected 200")
            text = response.text
        else:
            text = Path(source).read_text(encoding="utf-8")
    except httpx.HTTPError as exc:
        raise DiscoverError(f"cannot fetch {source}: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        raise DiscoverError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            raise DiscoverError(f"{source} is neither JSON nor YAML") from None
    if not isinstance(doc, dict) or "paths" not in doc:
        raise DiscoverError(f"{source} is not an OpenAPI document (no 'paths')")
    return doc


def _placeholder(param: dict[str, Any]) -> str:
    schema = param.get("schema") or {}
    name = str(param.get("name", "")).lower()
    if schema.get("format") == "uuid" or (name.endswith("id") and schema.get("type") == "string"):
        return _ZERO_UUID
    if schema.get("type") in ("integer", "number"):
        return "0"
    return "pam-monitor"


def _check_name(method: str, path: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "_", path.replace("{", "").replace("}", "")).strip("_").lower() or "root"
    base = f"{stem}_{method}_unauth"[:60]
    name, n = base, 2
    while name in used:
        name, n = f"{base[:56]}_{n}", n + 1
    used.add(name)
    return name


def discover_checks(doc: dict[str, Any], target: str) -> list[dict[str, Any]]:
    """One auth_contract check per operation that declares a security requirement (its own or the global one)."""
    global_security = doc.get("security") or []
    checks: list[dict[str, Any]] = []
    used: set[str] = set()
    for path, item in sorted((doc.get("paths") or {}).items()):
        if not isinstance(item, dict):
            continue
        shared_params = [p for p in item.get("parameters", []) if isinstance(p, dict)]
        for method in _METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            security = operation.get("security", global_security)
            # `security: []` or only `{}` entries means anonymous access is allowed: nothing to protect.
            if not security or all(not req for req in security):
                continue
            params = {
                p["name"]: _placeholder(p)
                for p in [*shared_params, *operation.get("parameters", [])]
                if isinstance(p, dict) and p.get("in") == "path" and "name" in p
            }
            check: dict[str, Any] = {
                "name": _check_name(method, path, used), "kind": "auth_contract", "target": target,
                "method": method.upper(), "path": path,
            }
            if params:
                check["params"] = params
            checks.append(check)
    return checks


def is_user_id(param: dict[str, Any]) -> bool:
    """Whether a path parameter names a user: user_id, userId, uid, owner_id, ...user_id (any case)."""
    name = re.sub(r"[^a-z]", "", str(param.get("name", "")).lower())
    return name in ("userid", "uid", "user", "ownerid", "profileid", "accountid") or name.endswith("userid")


def isolation_checks(doc: dict[str, Any], target: str) -> list[dict[str, Any]]:
    """One tenant_isolation check per GET with a user-id path parameter: as `monitor_user`, ask for another user's
    resource (the check passes when it is refused)."""
    checks: list[dict[str, Any]] = []
    used: set[str] = set()
    for path, item in sorted((doc.get("paths") or {}).items()):
        operation = item.get("get") if isinstance(item, dict) else None
        if not isinstance(operation, dict):
            continue
        declared = [p for p in [*item.get("parameters", []), *operation.get("parameters", [])]
                    if isinstance(p, dict) and p.get("in") == "path" and "name" in p]
        if not any(is_user_id(p) for p in declared):
            continue
        params = {p["name"]: (OTHER_USER if is_user_id(p) else _placeholder(p)) for p in declared}
        name = _check_name("get", path, used).removesuffix("_unauth") + "_isolation"
        checks.append({"name": name, "kind": "tenant_isolation", "target": target, "identity": IDENTITY,
                       "method": "GET", "path": path, "params": params})
    return checks


def run_discover(args: argparse.Namespace) -> int:
    """CLI handler: print or write the generated `checks:` block; exit 0, or 2 when the document is unusable."""
    try:
        doc = load_document(args.openapi)
    except DiscoverError as exc:
        print(f"pam-monitor discover: {exc}", file=sys.stderr)
        return 2
    checks = discover_checks(doc, args.target)
    header = (f"# {len(checks)} auth_contract checks generated from {args.openapi}\n"
              "# Path parameters hold placeholder values; the auth layer must refuse before they are looked up.\n")
    if getattr(args, "journeys", False):
        isolation = isolation_checks(doc, args.target)
        checks += isolation
        header += f"# {len(isolation)} tenant_isolation checks (--journeys) ask for user {OTHER_USER}'s data.\n"
        header += IDENTITIES_BLOCK
    text = header + yaml.safe_dump({"checks": checks}, sort_keys=False, default_flow_style=False)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {len(checks)} checks to {args.output}", file=sys.stderr)
    return 0
