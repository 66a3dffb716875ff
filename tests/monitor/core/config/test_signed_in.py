"""Config of signed-in checks: the example validates as it stands; identities, journeys, tenant
isolation and db as_role refuse bad files with exact messages, and never echo a secret."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.core.config import JourneyCheck, TenantIsolationCheck, load_config
from monitor.core.config.kinds import identity_refs

ROOT = Path(__file__).resolve().parents[4]
EXAMPLE = ROOT / "examples" / "journeys.yaml"
SECRET = "jwt-Secret-never-echoed-4471"

BASE = """\
targets:
  backend: {base_url: "http://127.0.0.1:8000"}
  database: {dsn: "postgresql://app:hunter22@127.0.0.1/app"}
"""
ME = BASE + f'identities:\n  me: {{mint: {{secret: "{SECRET}", sub: u-1}}}}\n'
SIGN_IN = '{url: "https://x.supabase.co/auth/v1", api_key: "k12345", email: a@b.c, password: "pw123456"}'
EXACTLY_ONE = ("{f}:5: identities.me: set exactly one of mint (a token signed with the project's JWT secret) or "
               "sign_in (Supabase Auth email + password)")


def identity(body: str) -> str:
    """A file whose identity `me` is `body`."""
    return BASE + f"identities:\n  me: {body}\n"


def journey(steps: str, extra: str = "") -> str:
    """A file with one journey `j` as identity `me` with these steps (YAML flow items)."""
    return ME + f"checks:\n  - {{name: j, kind: journey, target: backend, identity: me{extra}, steps: [{steps}]}}\n"


UNKNOWN = "placeholder {{{}}} is not known; known here: run_id, sub; capture it in an earlier step or add it to params"
INVALID: list[tuple[str, str, list[str]]] = [
    ("mint_and_sign_in", identity(f'{{mint: {{secret: "abcdefgh", sub: u}}, sign_in: {SIGN_IN}}}'), [EXACTLY_ONE]),
    ("neither", identity("{}"), [EXACTLY_ONE]),
    ("ttl_too_long", identity('{mint: {secret: "abcdefgh", sub: u, ttl: 48h}}'),
     ["{f}:5: identities.me.mint.ttl: must be between 1s and 24h (Supabase's default is 1h), got '48h'"]),
    ("ttl_too_short", identity('{mint: {secret: "abcdefgh", sub: u, ttl: 500ms}}'),
     ["{f}:5: identities.me.mint.ttl: must be between 1s and 24h (Supabase's default is 1h), got '500ms'"]),
    ("claims_set_sub", identity('{mint: {secret: "abcdefgh", sub: u, claims: {sub: other, exp: 1}}}'),
     ["{f}:5: identities.me.mint.claims: must not set sub, exp: sub comes from mint.sub, iat and exp from the "
      "time and ttl"]),
    ("empty_secret", identity('{mint: {secret: "", sub: u}}'),
     ['{f}:5: identities.me.mint.secret: is empty; set it (from the environment: "${VAR}", or a file: '
      '"${file:/path}")']),
    ("sign_in_url", identity(SIGN_IN.replace("{url: \"https://", "{sign_in: {url: \"") + "}"),
     ["{f}:5: identities.me.sign_in.url: must be an absolute http:// or https:// URL such as "
      "https://<ref>.supabase.co/auth/v1, got 'x.supabase.co/auth/v1'"]),
    ("unknown_identity", ME + "checks:\n  - {name: t, kind: tenant_isolation, target: backend, identity: you, "
     "path: /x}\n",
     ["{f}:7: checks[0] (t).identity: unknown identity 'you'; defined identities: me (add it under the top-level "
      "identities:)"]),
    ("unknown_voice_identity", ME + "checks:\n  - {name: v, kind: voice, target: backend, path: /h, "
     "synthesize: {path: /tts, identity: you}}\n",
     ["{f}:7: checks[0] (v).synthesize.identity: unknown identity 'you'; defined identities: me (add it under the "
      "top-level identities:)"]),
    ("db_identity_without_role", ME + "checks:\n  - {name: d, kind: db, target: database, identity: me}\n",
     ["{f}:7: checks[0] (d): identity needs as_role (the role its requests run as; Supabase: authenticated)"]),
    ("unknown_placeholder", journey('{name: a, path: "/u/{user}"}'),
     ["{f}:7: checks[0] (j): steps[0] (a).path: " + UNKNOWN.format("user")]),
    ("unknown_in_header", journey('{name: a, path: /x, headers: {X-CSRF-Token: "{csrf}"}}'),
     ["{f}:7: checks[0] (j): steps[0] (a).headers.X-CSRF-Token: " + UNKNOWN.format("csrf")]),
    ("unknown_in_expect", journey('{name: a, path: /x, expect: {json: {nonce: "{nonce}"}}}'),
     ["{f}:7: checks[0] (j): steps[0] (a).expect.json.nonce: " + UNKNOWN.format("nonce")]),
    ("captured_later", journey('{name: a, path: "/u/{csrf}"}, {name: b, path: /c, capture: {csrf: json.t}}'),
     ["{f}:7: checks[0] (j): steps[0] (a).path: placeholder {csrf} is not known; csrf is captured by step b, "
      "which does not run before this request (a step's captures serve only the steps after it)"]),
    ("captured_by_itself", journey('{name: a, path: /x, json: {t: "{csrf}"}, capture: {csrf: json.t}}'),
     ["{f}:7: checks[0] (j): steps[0] (a).json: placeholder {csrf} is not known; csrf is captured from this "
      "step's own response, after its request is sent; use it in a later step"]),
    ("sub_without_identity", BASE + 'checks:\n  - {name: j, kind: journey, target: backend, '
     'steps: [{name: a, path: "/u/{sub}"}]}\n',
     ["{f}:5: checks[0] (j): steps[0] (a).path: placeholder {sub} is not known; {sub} needs the check's "
      "identity; add identity: <name>"]),
    ("duplicate_step", journey("{name: a, path: /x}, {name: a, path: /y}"),
     ["{f}:7: checks[0] (j): steps[1] (a): duplicate step name (also steps[0])"]),
    ("reserved_step", journey("{name: sign_in, path: /x}"),
     ["{f}:7: checks[0] (j).steps[0].name: 'sign_in' is reserved: a failed sign-in is reported as step 'sign_in'"]),
    ("bad_capture", journey("{name: a, path: /x, capture: {t: body.token}}"),
     ["{f}:7: checks[0] (j).steps[0].capture: t: 'body.token' is not a capture source; write json.<dotted.path>, "
      "header.<Name> or cookie.<name>"]),
    ("param_shadows_run_id", journey("{name: a, path: /x}", ", params: {run_id: x}"),
     ["{f}:7: checks[0] (j): params must not be named run_id: that name is filled by pam-monitor"]),
]


@pytest.mark.parametrize(("body", "expected"), [(b, e) for _, b, e in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_signed_in_config_gives_exact_message(
    write_config: Callable[[str], Path], config_problems: Callable[..., list[str]], body: str, expected: list[str]
) -> None:
    """Each invalid file yields exactly the listed lines, and none of them shows the identity's secret."""
    path = write_config(body)
    problems = config_problems(path)
    assert [line.replace("{f}", str(path)) for line in expected] == problems
    assert not any(SECRET in line for line in problems)


def test_example_validates_as_it_stands() -> None:
    """examples/journeys.yaml (signed-in checks and targets) loads with its two variables; the identity is minted."""
    config = load_config(EXAMPLE, environ={"SUPABASE_JWT_SECRET": SECRET, "DATABASE_URL": "postgresql://a@h/d"})
    assert [("settings_journey", "journey"), ("settings_isolation", "tenant_isolation"), ("db_as_user", "db")] == [
        (c.name, c.kind) for c in config.checks]
    minted = config.identities["monitor_user"].mint
    assert minted is not None
    assert ("7c0f3a8e-0000-4000-8000-000000000001", 300.0, {"role": "authenticated", "aud": "authenticated"}) == (
        minted.sub, minted.ttl, minted.claims)
    assert SECRET == minted.secret.get_secret_value()
    assert SECRET not in repr(config)
    journey_check, isolation, db = config.checks
    assert isinstance(journey_check, JourneyCheck)
    assert isinstance(isolation, TenantIsolationCheck)
    assert ["csrf", "read", "write", "read_back"] == [s.name for s in journey_check.steps]
    assert [("identity", "monitor_user")] == identity_refs(db)
    assert ("authenticated", "monitor_user") == (db.as_role, db.identity)  # type: ignore[union-attr]


def test_example_without_the_secret_names_the_variable() -> None:
    """The example with SUPABASE_JWT_SECRET unset is refused naming the variable and the field."""
    from monitor.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, environ={"DATABASE_URL": "postgresql://a@h/d"})
    assert any("identities.monitor_user.mint.secret: environment variable SUPABASE_JWT_SECRET is not set" in line
               for line in info.value.problems), info.value.problems
