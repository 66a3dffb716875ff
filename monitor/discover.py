"""`pam-monitor discover`: turn an OpenAPI document into a config with an auth_contract check per secured operation.

The output is a whole config file that validates and runs as it stands: a target (`--base-url`, else the
document's `servers`, else the backend the document was found on, else `${BACKEND_URL}` with a comment saying to
set it), and one auth_contract check per operation that declares security. Path parameters get placeholder
values; a parameter that names a user (`user_id`, `userId`, `uid`, `id` right after `/users/`, or a uuid
`<something>_id` whose name suggests a person: owner, member, account, profile, author, customer) also gets
`forged_claims: {sub: "{<param>}"}`, so forged tokens impersonate that user and an owner check cannot hide a
backend that decodes tokens without verifying them. PUT, POST and PATCH operations get a minimal valid JSON body
built from their schema (required properties, type-appropriate values) and required query parameters a value,
so validation cannot answer before the auth layer. With `--journeys`, also a tenant_isolation check per GET
of a user's resource (each reads the monitoring user's own resource first, the same path with its id, as its
control), and the `identities:` block it needs, which validates with its variables unset (placeholders after
`:-` stand in, and the checks then say pam-monitor cannot act as the user).

The target is paced so that watching cannot get pam-monitor banned or rate-limited: `max_rate` (DEFAULT_MAX_RATE)
and `max_routes_per_minute` (DEFAULT_MAX_ROUTES; backends' IP-blocking middleware bans a client touching too many
distinct routes a minute), explained in a comment with the time one round of every check takes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import yaml

from monitor.core.config.base import ALL_FORGED

_METHODS = ("get", "put", "post", "patch", "delete")
_WITH_BODY = ("put", "post", "patch")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
USUAL_PATHS = ("/openapi.json", "/docs/openapi.json", "/api/openapi.json", "/swagger.json")
"""Where a backend usually serves its OpenAPI document, tried in order when given a base URL."""
_USER_NAMES = re.compile(r"^(user_?id|uid|user_?uuid)$", re.IGNORECASE)
_PERSON = re.compile(r"user|owner|member|account|profile|author|customer|person", re.IGNORECASE)
_USER_SEGMENTS = frozenset({"users", "user", "profiles", "accounts", "members"})
_MAX_DEPTH = 6
OTHER_USER = "00000000-0000-4000-8000-000000000002"
"""The user id a tenant_isolation check asks for: someone who is not the monitoring user."""
IDENTITY = "monitor_user"
IDENTITY_VARIABLES = ("SUPABASE_JWT_SECRET", "MONITOR_USER_ID")
"""The environment variables the identity block reads."""
UNSET_SECRET = "unset-SUPABASE_JWT_SECRET"  # noqa: S105 - a placeholder that no backend accepts, not a secret
UNSET_SUB = "00000000-0000-4000-8000-000000000001"
IDENTITIES_BLOCK = f"""\
# --journeys: the tenant_isolation checks below act as a signed-in monitoring user, `{IDENTITY}`. Define it:
# a dedicated user of the project (never a real customer), its token minted with the project's JWT secret, or
# signed in for real with  sign_in: {{url: "https://<ref>.supabase.co/auth/v1", api_key: "${{SUPABASE_ANON_KEY}}",
# email: monitor@example.com, password: "${{MONITOR_PASSWORD}}"}}  instead of mint.
# Set SUPABASE_JWT_SECRET and MONITOR_USER_ID in the environment. Until they are set, the placeholders after ":-"
# stand in: the file validates, and each tenant_isolation check reports that pam-monitor cannot act as the user
# (its own read is refused), never a verdict about the backend. The token carries Supabase's claims (role and aud
# authenticated), like a real signed-in user's.
identities:
  {IDENTITY}:
    mint:
      secret: "${{SUPABASE_JWT_SECRET:-{UNSET_SECRET}}}"
      sub: "${{MONITOR_USER_ID:-{UNSET_SUB}}}"
      ttl: 5m
      claims: {{role: authenticated, aud: authenticated}}
"""
DEFAULT_MAX_RATE = 10
"""Requests a minute `discover` allows its target: conservative, the operator raises it knowing the backend."""
DEFAULT_MAX_ROUTES = 5
"""Distinct routes a minute `discover` allows its target (IP-blocking middleware often bans at 20)."""
_REQUESTS_PER_RUN = {"auth_contract": 1 + len(ALL_FORGED), "tenant_isolation": 2}


class DiscoverError(Exception):
    """The document could not be read or is not OpenAPI."""


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except RecursionError:
        raise DiscoverError(f"{source} is nested too deeply to be an OpenAPI document") from None
    except ValueError:
        try:
            doc = yaml.safe_load(text)
        except RecursionError:
            raise DiscoverError(f"{source} is nested too deeply to be an OpenAPI document") from None
        except yaml.YAMLError:
            raise DiscoverError(f"{source} is neither JSON nor YAML") from None
    if not isinstance(doc, dict) or "paths" not in doc:
        raise DiscoverError(f"{source} is not an OpenAPI document (no 'paths')")
    return doc


class _Unreachable(DiscoverError):
    """The server could not be talked to at all: trying other paths on it is pointless."""


def _fetch(url: str, timeout: float) -> dict[str, Any]:
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise _Unreachable(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise DiscoverError(f"GET {url} answered {response.status_code}, expected 200")
    return _parse(response.text, url)


def find_document(source: str, timeout: float = 10.0) -> tuple[dict[str, Any], str]:
    """The OpenAPI document (JSON or YAML) at a URL or in a file, and where it was found.

    A URL that is not itself an OpenAPI document, and does not end in .json, .yaml or .yml, is taken as the
    backend's base URL: the usual paths (USUAL_PATHS) under it are tried in order, and the error lists each try.
    """
    if not re.match(r"^https?://", source):
        try:
            return _parse(Path(source).read_text(encoding="utf-8"), source), source
        except OSError as exc:
            raise DiscoverError(f"cannot read {source}: {exc.strerror or exc}") from None
    candidates = [source]
    if not re.search(r"\.(json|ya?ml)$", urlsplit(source).path):
        candidates += [source.rstrip("/") + path for path in USUAL_PATHS]
    tried: list[str] = []
    for url in candidates:
        try:
            return _fetch(url, timeout), url
        except _Unreachable:
            raise
        except DiscoverError as exc:
            tried.append(str(exc))
    if len(tried) == 1:
        raise DiscoverError(tried[0])
    raise DiscoverError("no OpenAPI document found: " + "; ".join(tried))


def load_document(source: str, timeout: float = 10.0) -> dict[str, Any]:
    """Read an OpenAPI document (JSON or YAML) from a URL, a backend's base URL or a file."""
    return find_document(source, timeout)[0]


def _resolve(doc: dict[str, Any], schema: Any, depth: int) -> dict[str, Any]:
    """The schema with a local `$ref` followed and the first of allOf/anyOf/oneOf merged in (bounded depth)."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < _MAX_DEPTH:
        ref = str(schema["$ref"])
        target: Any = doc
        for part in ref.removeprefix("#/").split("/") if ref.startswith("#/") else ():
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema, seen = target, seen + 1
    if not isinstance(schema, dict):
        return {}
    if "allOf" in schema and depth < _MAX_DEPTH:
        merged: dict[str, Any] = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for part in [*schema["allOf"], {k: v for k, v in schema.items() if k != "allOf"}]:
            resolved = _resolve(doc, part, depth + 1)
            properties.update(resolved.get("properties") or {})
            required += [name for name in resolved.get("required") or [] if name not in required]
            merged.update({k: v for k, v in resolved.items() if k not in ("properties", "required")})
        return {**merged, "properties": properties, "required": required} if properties or required else merged
    for key in ("oneOf", "anyOf"):
        options = [o for o in schema.get(key) or [] if _resolve(doc, o, depth + 1).get("type") != "null"]
        if options and depth < _MAX_DEPTH:
            return _resolve(doc, options[0], depth + 1)
    return schema


_STRING_FORMATS = {"uuid": _ZERO_UUID, "date-time": "1970-01-01T00:00:00Z", "date": "1970-01-01",
                   "email": "monitor@example.com", "uri": "https://example.com", "time": "00:00:00"}


def example_value(doc: dict[str, Any], schema: Any, depth: int = 0) -> Any:
    """A minimal value valid against `schema`: its example, default, const or first enum value if it has one,
    else an object of its required properties, a list of its minimum items, or a type-appropriate scalar."""
    resolved = _resolve(doc, schema, depth)
    for key in ("example", "default", "const"):
        if key in resolved:
            return resolved[key]
    if resolved.get("examples") and isinstance(resolved["examples"], list):
        return resolved["examples"][0]
    if resolved.get("enum"):
        return resolved["enum"][0]
    kind = resolved.get("type", "object" if "properties" in resolved else "string")
    if isinstance(kind, list):  # OpenAPI 3.1: type: [string, "null"]
        kind = next((k for k in kind if k != "null"), "null")
    if depth >= _MAX_DEPTH:
        return None
    if kind == "object":
        props = resolved.get("properties") or {}
        return {name: example_value(doc, props.get(name, {}), depth + 1) for name in resolved.get("required") or []}
    if kind == "array":
        return [example_value(doc, resolved.get("items", {}), depth + 1) for _ in range(resolved.get("minItems", 0))]
    if kind in ("integer", "number"):
        low, exclusive = resolved.get("minimum", 0), resolved.get("exclusiveMinimum", False)
        # OpenAPI 3.0: exclusiveMinimum is a flag on minimum; 3.1: it is the bound itself.
        low = low + int(exclusive) if isinstance(exclusive, bool) else exclusive + 1
        return int(low) if kind == "integer" else float(low)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    text = _STRING_FORMATS.get(str(resolved.get("format")), "pam-monitor")
    text = text.ljust(int(resolved.get("minLength", 0)), "x")
    return text[: int(resolved["maxLength"])] if "maxLength" in resolved else text


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value)


def _json_schema(operation: dict[str, Any]) -> Any:
    content = (operation.get("requestBody") or {}).get("content") or {}
    for media, spec in content.items():
        if "json" in str(media) and isinstance(spec, dict):
            return spec.get("schema", {})
    return None


def _placeholder(param: dict[str, Any]) -> str:
    schema = param.get("schema") or {}
    name = str(param.get("name", "")).lower()
    if schema.get("format") == "uuid" or (name.endswith("id") and schema.get("type") == "string"):
        return _ZERO_UUID
    if schema.get("type") in ("integer", "number"):
        return "0"
    return "pam-monitor"


def names_a_user(param: dict[str, Any], path: str) -> bool:
    """Whether a path parameter holds a user's id (module docstring), so forged tokens should carry it as sub."""
    name = str(param.get("name", ""))
    schema = param.get("schema") or {}
    letters = re.sub(r"[^a-z]", "", name.lower())
    if _USER_NAMES.match(name) or letters.endswith("userid"):
        return True
    before = path.split("{" + name + "}", 1)[0].rstrip("/").rsplit("/", 1)[-1].lower()
    if name.lower() == "id" and before in _USER_SEGMENTS:
        return True
    is_id = name.lower().endswith("_id") or name.endswith("Id")
    return is_id and schema.get("format") == "uuid" and _PERSON.search(name) is not None


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
            all_params = [_resolve(doc, p, 0) for p in [*shared_params, *operation.get("parameters", [])]]
            path_params = [p for p in all_params if p.get("in") == "path" and "name" in p]
            required_query = [p for p in all_params if p.get("in") == "query" and p.get("required") and "name" in p]
            check: dict[str, Any] = {
                "name": _check_name(method, path, used), "kind": "auth_contract", "target": target,
                "method": method.upper(), "path": path,
            }
            if path_params:
                check["params"] = {p["name"]: _placeholder(p) for p in path_params}
            if required_query:  # so query validation cannot answer before the auth layer
                check["query"] = {p["name"]: _query_value(example_value(doc, p.get("schema", {})))
                                  for p in required_query}
            user = next((p["name"] for p in path_params if names_a_user(p, path)), None)
            if user is not None:
                check["forged_claims"] = {"sub": "{" + user + "}"}
            schema = _json_schema(operation) if method in _WITH_BODY else None
            if schema is not None:
                check["json"] = example_value(doc, schema)
            checks.append(check)
    return checks


def base_url_for(doc: dict[str, Any], found_at: str, source: str, given: str | None) -> str | None:
    """The target's base URL: `given`, else the document's first server (a relative one resolved against where the
    document was found), else the backend the document was found on when `source` was its base URL; else None."""
    if given:
        return given.rstrip("/")
    servers = [s for s in doc.get("servers") or [] if isinstance(s, dict) and s.get("url")]
    if servers and "{" not in str(servers[0]["url"]):
        url = str(servers[0]["url"])
        if re.match(r"^https?://", url):
            return url.rstrip("/")
        if re.match(r"^https?://", found_at):
            return urljoin(found_at, url).rstrip("/")
    if re.match(r"^https?://", source) and found_at != source:
        return source.rstrip("/")
    return None


def render(
    doc: dict[str, Any], found_at: str, target: str, base_url: str | None, *, journeys: bool = False,
    environ: Mapping[str, str] | None = None, cors_origin: str | None = None,
) -> tuple[str, int]:
    """The whole generated config file (a header saying what it is, its target, its checks) and its check count.
    `environ` (default os.environ) only says which of the identity's variables are unset, in a comment;
    `cors_origin` puts `cors` (that origin, credentials, Authorization) on every auth_contract check."""
    environ = os.environ if environ is None else environ
    checks = discover_checks(doc, target)
    if cors_origin is not None:
        for check in checks:
            check["cors"] = {"origin": cors_origin, "credentials": True, "headers": ["Authorization"]}
    isolation = isolation_checks(doc, target) if journeys else []
    users = sum(1 for check in checks if "forged_claims" in check)
    header = [
        f"# pam-monitor config generated by `pam-monitor discover` from {found_at}",
        f"# {len(checks)} auth_contract checks, one per secured operation. Path parameters hold placeholder values:",
        "# the auth layer must refuse before they are looked up. Request bodies are minimal examples of the schema.",
        f"# {users} checks forge tokens for the user in their path (forged_claims), so an owner check cannot hide a",
        "# backend that decodes tokens without verifying them.",
    ]
    if cors_origin is not None:
        header += [f"# --cors-origin: each check also sends the browser's preflight from {cors_origin} and judges the",
                   "# refusals' CORS headers; add to cors.headers what the frontend sends besides Authorization."]
    if base_url is None:
        header += ["# BACKEND_URL: the document names no server and --base-url was not given; set BACKEND_URL in the",
                   "# environment to the backend's base URL (e.g. http://127.0.0.1:8000), or edit base_url below."]
    identities = ""
    if journeys:
        header.append(f"# {len(isolation)} tenant_isolation checks (--journeys) ask for user {OTHER_USER}'s data,")
        header.append("# each after reading the monitoring user's own resource (the same path, its id) as a control.")
        unset = [name for name in IDENTITY_VARIABLES if not environ.get(name)]
        if unset:
            header.append(f"# {' and '.join(unset)} {'was' if len(unset) == 1 else 'were'} not set when this file was "
                          "written: see the identities block.")
        identities = IDENTITIES_BLOCK
    targets = yaml.safe_dump({"targets": {target: {"base_url": base_url or "${BACKEND_URL}"}}}, sort_keys=False)
    text = ("\n".join(header) + "\n" + identities + targets + _pacing_block(checks + isolation)
            + yaml.safe_dump({"checks": checks + isolation}, sort_keys=False, default_flow_style=False))
    return text, len(checks) + len(isolation)


def _pacing_block(checks: list[dict[str, Any]]) -> str:
    """The target's max_rate and max_routes_per_minute, with a comment saying why and what a round costs."""
    requests = sum(_REQUESTS_PER_RUN.get(str(c["kind"]), 1) + ("cors" in c) for c in checks)
    # Scheduled runs get max_rate less the confirmations' reserve (monitor/pacing.py): 80 % of it.
    minutes = max(requests / (DEFAULT_MAX_RATE * 0.8), len(checks) / (DEFAULT_MAX_ROUTES * 0.8))
    rate, routes, took = DEFAULT_MAX_RATE, DEFAULT_MAX_ROUTES, max(1, round(minutes))
    return (
        f"    # Paced so that watching cannot get pam-monitor banned or rate-limited: at most {rate} requests\n"
        f"    # and {routes} distinct routes a minute (IP-blocking middleware bans a client touching too many\n"
        "    # routes a minute; a rate limiter answers 429). Every check's interval is stretched to fit: one round of\n"
        f"    # these {len(checks)} checks ({requests} requests) takes about {took:,} min, and so does "
        "`pam-monitor check`\n"
        "    # (use --only NAME to run a few). Raise both once you know the backend's limits.\n"
        f"    max_rate: {DEFAULT_MAX_RATE}/m\n"
        f"    max_routes_per_minute: {DEFAULT_MAX_ROUTES}\n"
    )


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
        if not any(names_a_user(p, path) for p in declared):
            continue
        params = {p["name"]: (OTHER_USER if names_a_user(p, path) else _placeholder(p)) for p in declared}
        name = _check_name("get", path, used).removesuffix("_unauth") + "_isolation"
        checks.append({"name": name, "kind": "tenant_isolation", "target": target, "identity": IDENTITY,
                       "method": "GET", "path": path, "params": params})
    return checks


def run_discover(args: argparse.Namespace) -> int:
    """CLI handler: print or write the generated config; exit 0, or 2 when no usable document was found."""
    try:
        doc, found_at = find_document(args.openapi)
    except DiscoverError as exc:
        print(f"pam-monitor discover: {exc}", file=sys.stderr)
        return 2
    base_url = base_url_for(doc, found_at, args.openapi, args.base_url)
    text, count = render(doc, found_at, args.target, base_url, journeys=getattr(args, "journeys", False),
                         cors_origin=getattr(args, "cors_origin", None))
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        print(f"wrote {count} checks to {args.output}", file=sys.stderr)
    return 0
