"""monitor.core.secrets: which secret values are found, in which forms, and how the Redactor hides them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from monitor.core.config import load_config
from monitor.core.secrets import REDACTED, Redactor, collect_secrets, dsn_passwords, redact_values, secret_parts


def test_every_occurrence_of_a_secret_is_replaced() -> None:
    """A secret is replaced wherever and however often it appears; the text around it is kept."""
    redact = Redactor(["hunter2-pw"])
    assert f"a {REDACTED} b {REDACTED}c" == redact.scrub("a hunter2-pw b hunter2-pwc")


@pytest.mark.parametrize("order", [["tok-1234", "tok-1234-extended"], ["tok-1234-extended", "tok-1234"]])
def test_longest_secret_is_replaced_first_whatever_the_order_given(order: list[str]) -> None:
    """When one secret is a prefix of another the longer one goes whole: no tail of it is left in the text."""
    assert f"{REDACTED} and {REDACTED}" == Redactor(order).scrub("tok-1234-extended and tok-1234")


def test_the_token_of_an_authorization_header_is_hidden_alone() -> None:
    """`Bearer <token>` configured as a header value also hides the bare token (a backend echoes just that)."""
    redact = Redactor(["Bearer eyJhbGciOi.payload.sig"])
    assert f"invalid token {REDACTED}" == redact.scrub("invalid token eyJhbGciOi.payload.sig")
    assert f"Authorization: {REDACTED}" == redact.scrub("Authorization: Bearer eyJhbGciOi.payload.sig")
    assert {"Basic dXNlcjpwdw==", "dXNlcjpwdw==", "Basic%20dXNlcjpwdw%3D%3D", "dXNlcjpwdw%3D%3D",
            "user:pw", "user%3Apw", "pw"} == secret_parts("Basic dXNlcjpwdw==")


def test_percent_encoded_forms_are_hidden() -> None:
    """A secret echoed inside a URL (percent-encoded by a library) is hidden as well."""
    redact = Redactor(["p@ss word/1"])
    assert f"GET https://h/?key={REDACTED}" == redact.scrub("GET https://h/?key=p%40ss%20word%2F1")


def test_the_password_of_a_dsn_is_hidden_on_its_own() -> None:
    """A DSN secret also hides its password, raw and percent-decoded (psycopg errors quote it decoded)."""
    redact = Redactor(["postgresql://app:p%40ss-w0rd@db:5432/app"])
    assert f'password authentication failed for "app" ({REDACTED})' == redact.scrub(
        'password authentication failed for "app" (p@ss-w0rd)')
    assert f"dsn {REDACTED}" == redact.scrub("dsn postgresql://app:p%40ss-w0rd@db:5432/app")
    assert f"user app:{REDACTED}@db" == redact.scrub("user app:p%40ss-w0rd@db")


def test_short_values_are_hidden_only_whole_or_in_place() -> None:
    """Blank values are no secrets. A configured secret shorter than 8 characters is still hidden where it stands
    as a whole word (a secret of any length is one), but not inside another word; a short part of a secret (`xy`,
    the token of `Bearer xy`) is hidden only in its place, never bare. (Before, short secrets were never hidden,
    and 4-character parts were hidden everywhere.)"""
    redact = Redactor(["abc", "   ", "", "Bearer xy"])
    assert f"{REDACTED} abcd xy Bearer and a   gap" == redact.scrub("abc abcd xy Bearer and a   gap")
    assert REDACTED == redact.scrub("Bearer xy")
    assert f"sent Authorization: {REDACTED}" == redact.scrub("sent Authorization: Bearer xy")


def test_update_replaces_the_set_of_secrets() -> None:
    """After update() (a config reload) the new secrets are hidden and the old ones no longer are."""
    redact = Redactor(["old-secret-1"])
    redact.update(["new-secret-2"])
    assert f"old-secret-1 {REDACTED}" == redact("old-secret-1 new-secret-2")


def test_dsn_passwords_from_url_query_and_conninfo() -> None:
    """Passwords are found in URL userinfo (raw and decoded), a ?password= query, and quoted conninfo."""
    assert {"p%40ss", "p@ss", "q1"} == dsn_passwords("postgresql://u:p%40ss@h/db?password=q1&sslmode=require")
    assert {"a b'c"} == dsn_passwords("host=h password='a b\\'c' user=x")
    assert {"bare"} == dsn_passwords("host=h password=bare user=x")
    assert set() == dsn_passwords("host=h user=x")
    assert set() == dsn_passwords("postgresql://u:pw@[::1/db")  # unparseable URL: nothing, and no exception


class _Leaf(BaseModel):
    key: SecretStr
    note: str = "not a secret"


class _Tree(BaseModel):
    top: SecretStr | None = None
    leaf: _Leaf
    headers: dict[str, SecretStr] = {}
    leaves: list[_Leaf] = []
    pair: tuple[SecretStr, ...] = ()


def test_collect_secrets_walks_nested_models_dicts_lists_and_tuples() -> None:
    """Every SecretStr at any depth is collected; plain strings, None and empty secrets are not."""
    tree = _Tree(
        top=None,
        leaf=_Leaf(key=SecretStr("leaf-key")),
        headers={"Authorization": SecretStr("Bearer hdr-token"), "X-Empty": SecretStr("")},
        leaves=[_Leaf(key=SecretStr("listed-1")), _Leaf(key=SecretStr("listed-2"), note="plain")],
        pair=(SecretStr("tuple-1"),),
    )
    assert {"leaf-key", "Bearer hdr-token", "listed-1", "listed-2", "tuple-1"} == collect_secrets(tree)


def test_collect_secrets_finds_dsn_password_and_keys_of_a_loaded_config(
    example_path: Path, example_env: dict[str, str]
) -> None:
    """Every secret of the example config is collected, and a redactor built from them hides the DSN's password."""
    secrets = collect_secrets(load_config(example_path, environ=example_env))
    assert {"R0UT1NGKEY", example_env["DATABASE_URL"]} <= secrets
    assert f"auth failed for u:{REDACTED} and {REDACTED}" == Redactor(secrets).scrub(
        "auth failed for u:s3cr3t-pw and R0UT1NGKEY"
    )


JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtb25pdG9yIiwicm9sZSI6InNlcnZpY2Vfcm9sZSJ9"
       ".Hq3m2vRj4bWcF2s9K8xTq0ZyPpN7uLd1eA6oVt5gI3w")


def test_the_pieces_of_a_jwt_are_hidden_alone() -> None:
    """A configured JWT (a bearer token, a Supabase key) also hides its payload and its signature when a target
    echoes just one of them."""
    redact = Redactor([f"Bearer {JWT}"])
    _, payload, signature = JWT.split(".")
    assert f"bad signature {REDACTED}" == redact.scrub(f"bad signature {signature}")
    assert f"claims {REDACTED}." == redact.scrub(f"claims {payload}.")


def test_the_password_inside_basic_credentials_is_hidden() -> None:
    """`Basic <base64>` also hides the decoded user:password and the password alone."""
    redact = Redactor(["Basic " + "YWRtaW46czNjcmV0LXB3LTk5"])  # admin:s3cret-pw-99
    assert f"login failed for admin with {REDACTED}" == redact.scrub("login failed for admin with s3cret-pw-99")


@pytest.mark.parametrize(("text", "expected"), [
    ("excerpt ends in tok-9f8e", f"excerpt ends in {REDACTED}"),
    ("repr 'xx tok-9f8e7d...'", f"repr 'xx {REDACTED}...'"),
    ("cut tok-9f8e… then more", f"cut {REDACTED}… then more"),
    ("too short to tell: tok", "too short to tell: tok"),
    ("not a cut: tok-9f8e and more", "not a cut: tok-9f8e and more"),
])
def test_the_start_of_a_secret_left_by_a_cut_is_hidden(text: str, expected: str) -> None:
    """A text cut in the middle of a secret (at its end, or before an ellipsis) loses the 4 or more characters
    of the secret's start that the cut left; fewer, or the same characters away from a cut, are kept."""
    assert expected == Redactor(["tok-9f8e7d6c5b4a"]).scrub(text)


def test_url_passwords_of_plain_fields_are_collected(tmp_path: Path) -> None:
    """An Alertmanager URL is a plain field, but the password in it is collected for the redactor."""
    path = tmp_path / "c.yaml"
    path.write_text("targets: {t: {base_url: 'http://127.0.0.1:1'}}\n"
                    "checks: [{name: a, kind: http, target: t, path: /}]\n"
                    "alerts: {sinks: [{kind: alertmanager, url: 'http://am:Am-Pass-4242@127.0.0.1:9093'}]}\n")
    assert "Am-Pass-4242" in collect_secrets(load_config(path, environ={}))


EVERYDAY = ["httpKEY-3f9a0c7e51d2", "postKEY-8b1e4d2a9c70", "csrf_token=5e0d9b3c7a1f", "create_KEY-a7c2e9f04b13",
            "https://hooks.example.com/services/T0/B0/xoxb-4242", "postgresql://app:s3cr3t@db:5432/app"]
"""Secrets whose first characters are everyday words or public prefixes (a scheme, a cookie name)."""


@pytest.mark.parametrize("text", [
    "http", "kind http", "create_post", "create_", "step create", "GET https://", "json.csrf_token=",
    "connected to postgres", "postgresql://", "checks create_post and post", "see https://hooks.e",
])
def test_words_sharing_a_secret_s_first_characters_are_kept(text: str) -> None:
    """A text that ends with (or is) fewer than 8 characters of a secret's start, or only its public prefix
    (`https://`, `csrf_token=`, plus up to 7 characters), is not a cut secret: it is left as it is."""
    assert text == Redactor(EVERYDAY).scrub(text)


def test_a_cut_secret_is_hidden_past_its_public_prefix() -> None:
    """The start of a secret left at a cut is hidden once it holds 8 characters past its scheme or name."""
    redact = Redactor(EVERYDAY)
    assert f"excerpt: {REDACTED}" == redact.scrub("excerpt: https://hooks.example.com/serv")
    assert f"cookie {REDACTED}..." == redact.scrub("cookie csrf_token=5e0d9b3c...")
    assert f"key {REDACTED}" == redact.scrub("key create_KEY-a")


def test_a_short_part_is_hidden_in_its_place_only() -> None:
    """A DSN's 6-character password is hidden as the password of a URL, after `password=` (raw or
    percent-encoded), but not where the same characters are part of ordinary text."""
    redact = Redactor(["postgresql://app:s3cr3t@db:5432/app"])
    assert f"tried postgresql://app:{REDACTED}@other/app" == redact.scrub("tried postgresql://app:s3cr3t@other/app")
    assert f"password={REDACTED} host=db" == redact.scrub("password=s3cr3t host=db")
    assert "s3cr3ts are kept; s3cr3t alone too" == redact.scrub("s3cr3ts are kept; s3cr3t alone too")
    assert REDACTED == redact.scrub("postgresql://app:s3cr3t@db:5432/app")


def test_the_one_walk_keeps_names_and_redacts_everything_else() -> None:
    """redact_values (used by logs and results alike) leaves check, step, kind, target, alert and label names
    and alert keys alone at any depth, and redacts every other string, in dicts, lists and tuples."""
    redact = Redactor(["create_KEY-a7c2e9f04b13"])
    secret = "create_KEY-a7c2e9f04b13"
    value = {"check": "create_KEY-a7c2e9f04b13x", "kind": "http", "step": secret, "target": secret,
             "labels": {"step": secret}, "key": f"CheckFailed/c/{secret}", "message": f"said {secret}",
             "steps": [{"name": secret, "excerpt": secret}], "pair": (secret, 1)}
    assert {"check": "create_KEY-a7c2e9f04b13x", "kind": "http", "step": secret, "target": secret,
            "labels": {"step": secret}, "key": f"CheckFailed/c/{secret}", "message": f"said {REDACTED}",
            "steps": [{"name": secret, "excerpt": REDACTED}], "pair": [REDACTED, 1]} == redact_values(value, redact)
