"""`expect.json` matchers (one_of, exists, regex beside equality): a table of documents x matchers, the same
verdicts through http, voice and auth_contract, and the config errors a bad matcher or forged claim gives at load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from monitor.core.config import AuthContractCheck, VoiceCheck, load_config
from monitor.core.errors import ConfigError
from monitor.core.results import Outcome
from probes._http import json_field_problems
from tests.support.targets import TIMING, DepsFactory, run_probe
from tests.support.targets import http_check as make_check

DOCS: dict[str, Any] = {
    "good": {"status": "good", "checks": {"db": "ok", "tts": "optimal"}, "version": "2.4.1", "trace": None},
    "optimal": {"status": "optimal", "checks": {"db": "ok"}, "version": "2.0.0"},
    "limited": {"status": "limited", "checks": {"db": "degraded"}, "version": "1.9.3", "error": "quota"},
    "typed": {"status": 1, "ready": True, "items": [{"id": "a1"}, {"id": 7}], "version": 2},
}

# (document, expectation, problems: [] when it holds)
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("good", {"status": "good"}, []),
    ("limited", {"status": "good"}, ["json field status: expected 'good', got 'limited'"]),
    ("good", {"status": {"one_of": ["good", "optimal"]}}, []),
    ("optimal", {"status": {"one_of": ["good", "optimal"]}}, []),
    ("limited", {"status": {"one_of": ["good", "optimal"]}},
     ["json field status: expected one of 'good', 'optimal', got 'limited'"]),
    ("typed", {"status": {"one_of": [True, "1"]}}, ["json field status: expected one of True, '1', got 1"]),
    ("typed", {"ready": {"one_of": [1, True]}}, []),
    ("good", {"nope": {"one_of": ["x"]}}, ["json field nope: expected one of 'x', but the field is missing"]),
    ("good", {"trace": {"exists": True}}, []),
    ("optimal", {"trace": {"exists": True}}, ["json field trace: expected to exist, but the field is missing"]),
    ("good", {"error": {"exists": False}}, []),
    ("limited", {"error": {"exists": False}}, ["json field error: expected to be absent, got 'quota'"]),
    ("good", {"version": {"regex": r"^2\."}}, []),
    ("limited", {"version": {"regex": r"^2\."}},
     ["json field version: expected a string matching regex '^2\\\\.', got '1.9.3'"]),
    ("typed", {"version": {"regex": "2"}}, ["json field version: expected a string matching regex '2', got 2"]),
    ("typed", {"items.0.id": {"regex": "^a"}, "items.1.id": 7, "items.2.id": {"exists": False}}, []),
    ("good", {"checks": {"db": "ok", "tts": "optimal"}}, []),
    ("optimal", {"checks": {"db": "ok", "tts": "optimal"}},
     ["json field checks: expected {'db': 'ok', 'tts': 'optimal'}, got {'db': 'ok'}"]),
    ("limited", {"checks.db": {"one_of": ["ok"]}, "status": {"regex": "good"}, "version": {"exists": True}},
     ["json field checks.db: expected one of 'ok', got 'degraded'",
      "json field status: expected a string matching regex 'good', got 'limited'"]),
]


@pytest.mark.parametrize(("doc", "expect", "problems"), CASES)
def test_documents_x_matchers(doc: str, expect: dict[str, Any], problems: list[str]) -> None:
    """Each expectation holds or fails on each document as documented, the sentence giving the actual value."""
    assert problems == json_field_problems(DOCS[doc], expect)


@pytest.mark.parametrize(("doc", "outcome"), [("good", Outcome.OK), ("optimal", Outcome.OK),
                                              ("limited", Outcome.INVALID_RESPONSE)])
async def test_http_check_uses_matchers(base_url: str, make_deps: DepsFactory, doc: str, outcome: Outcome) -> None:
    """An http check whose health may be "good or optimal" passes on either and fails on "limited"."""
    check = make_check(query={"body": json.dumps(DOCS[doc]), "ctype": "application/json"},
                       expect={"json": {"status": {"one_of": ["good", "optimal"]}, "version": {"regex": r"^2\."}}})
    result = await run_probe(check, make_deps(base_url))
    assert outcome == result.outcome, result.message


async def test_voice_health_uses_matchers(base_url: str, make_deps: DepsFactory) -> None:
    """voice's health part takes the same matchers: healthy or degraded accepted, limited refused."""
    def check(status: str) -> VoiceCheck:
        return VoiceCheck.model_validate({"name": "v", "kind": "voice", "target": "t", "path": "/voice/health",
                                          "query": {"status": status}, **TIMING,
                                          "expect": {"json": {"status": {"one_of": ["healthy", "degraded"]}}}})
    deps = make_deps(base_url)
    degraded = await run_probe(check("degraded"), deps)
    limited = await run_probe(check("limited"), deps)
    assert (Outcome.OK, Outcome.INVALID_RESPONSE) == (degraded.outcome, limited.outcome)
    assert ("voice health: GET /voice/health: json field status: expected one of 'healthy', 'degraded', got "
            "'limited'") == limited.message


async def test_auth_contract_refusal_bodies_use_matchers(base_url: str, make_deps: DepsFactory) -> None:
    """auth_contract's expect.json holds each refusal body to the matchers (the /auth endpoint's bodies carry
    `detail` and `variant`)."""
    def check(json_fields: dict[str, Any]) -> AuthContractCheck:
        return AuthContractCheck.model_validate({"name": "a", "kind": "auth_contract", "target": "t",
                                                 "path": "/auth", **TIMING, "expect": {"json": json_fields}})
    deps = make_deps(base_url)
    good = await run_probe(check({"detail": {"regex": "authenticat"}, "variant": {"exists": True}}), deps)
    bad = await run_probe(check({"variant": {"one_of": ["none"]}}), deps)
    assert (Outcome.OK, Outcome.INVALID_RESPONSE) == (good.outcome, bad.outcome)
    assert bad.message.startswith("GET /auth: forged garbage token got 401 but the body does not match expect.json "
                                  "(json field variant: expected one of 'none', got 'garbage')"), bad.message


HEAD = 'targets:\n  backend: {base_url: "http://127.0.0.1:8000"}\nchecks:\n'
SETTINGS = ("  - {name: a, kind: auth_contract, target: backend, path: '/api/v1/users/{user_id}/settings',\n"
            "     params: {user_id: u-1}, ")

# (check line(s) under `checks:`, the exact problem lines; {f} is the file's path)
BAD_FILES: list[tuple[str, str, list[str]]] = [
    ("bad_regex", "  - {name: a, kind: http, target: backend, expect: {json: {version: {regex: '(2'}}}}\n",
     ["{f}:4: checks[0] (a).expect.json: json field version: regex '(2' is not a valid regular expression: missing "
      "), unterminated subpattern at position 0"]),
    ("mixed_keys", "  - {name: a, kind: http, target: backend, expect: {json: {s: {one_of: [a], x: 1}}}}\n",
     ["{f}:4: checks[0] (a).expect.json: json field s: mixes matcher keys (one_of) with other keys (x); a matcher "
      "takes exactly one of one_of, exists, regex"]),
    ("two_matchers", "  - {name: a, kind: voice, target: backend, expect: {json: {s: {exists: true, regex: a}}}}\n",
     ["{f}:4: checks[0] (a).expect.json: json field s: has 2 matchers (exists, regex); write exactly one per path"]),
    ("empty_one_of", "  - {name: a, kind: http, target: backend, expect: {json: {s: {one_of: []}}}}\n",
     ["{f}:4: checks[0] (a).expect.json: json field s: one_of must be a non-empty list of values"]),
    ("exists_not_bool", SETTINGS + "expect: {json: {detail: {exists: 'yes'}}}}\n",
     ["{f}:5: checks[0] (a).expect.json: json field detail: exists must be true or false, got 'yes'"]),
    ("unknown_placeholder", SETTINGS + "forged_claims: {sub: '{uid}'}}\n",
     ["{f}:4: checks[0] (a): forged_claims.sub uses placeholders with no value in params: uid (params: user_id)"]),
    ("claims_set_exp", SETTINGS + "forged_claims: {exp: 1}}\n",
     ["{f}:4: checks[0] (a): forged_claims must not set exp: each forged variant sets exp and iat itself (the "
      "expired token needs an exp in the past)"]),
    ("429_as_refusal", SETTINGS + "expect: {status: [401, 429]}}\n",
     ["{f}:5: checks[0] (a).expect.status: must not include 429: a rate limiter's answer says nothing about auth "
      "(it is outcome rate_limited, inconclusive)"]),
]


@pytest.mark.parametrize(("name", "checks", "problems"), BAD_FILES, ids=[row[0] for row in BAD_FILES])
def test_bad_matchers_and_claims_are_refused_at_load(tmp_path: Path, name: str, checks: str,
                                                     problems: list[str]) -> None:
    """A bad matcher, an unknown placeholder in forged_claims, exp/iat in forged_claims or 429 as a refusal is a
    config error when the file loads, on the line of the key at fault."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(HEAD + checks)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert [line.format(f=path) for line in problems] == info.value.problems


def test_good_matchers_and_claims_load(tmp_path: Path) -> None:
    """The documented forms load as they stand, and forged_claims placeholders are filled from params."""
    path = tmp_path / "good.yaml"
    path.write_text(HEAD + SETTINGS + "forged_claims: {sub: '{user_id}', app_metadata: {tenant: 't-{user_id}'}},\n"
                    "     expect: {json: {detail: {regex: 'authenticat'}, code: {exists: false}}}}\n"
                    "  - {name: b, kind: http, target: backend, expect: {json: {status: {one_of: [good, optimal]}, "
                    "checks: {db: ok}}}}\n")
    config = load_config(path, environ={})
    auth = config.checks[0]
    assert isinstance(auth, AuthContractCheck)
    assert {"sub": "u-1", "app_metadata": {"tenant": "t-u-1"}} == auth.filled_claims()
