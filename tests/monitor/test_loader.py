"""Tests for monitor.core.config: the table of invalid config files and their exact messages, env and ${VAR} rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from monitor.core.config import DbCheck, HttpCheck, apply_shard, load_config, parse_shard
from monitor.core.errors import ConfigError
from monitor.core.secrets import Redactor, collect_secrets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pam-monitor.yaml"
EXAMPLE_ENV = {"DATABASE_URL": "postgresql://app:s3cr3t-pw@127.0.0.1:5432/app", "PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY"}

BASE = """\
targets:
  backend: {base_url: "http://127.0.0.1:8000"}
  database: {dsn: "postgresql://app:hunter22@127.0.0.1/app"}
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def _problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    return info.value.problems


# Each row: the file body, then the exact problem lines (with {f} standing for the file's path).
INVALID: list[tuple[str, str, list[str]]] = [
    (
        "typo_in_check_key",
        BASE + "checks:\n  - {name: a, kind: http, target: backend, timout: 5s}\n",
        ["{f}:5: checks[0].timout: unknown key 'timout'; did you mean 'timeout'? allowed keys: body, "
         "disable_alerts, enabled, expect, failure_threshold, headers, interval, json, kind, labels, maintenance, "
         "method, name, params, path, query, success_threshold, target, timeout"],
    ),
    (
        "unknown_kind",
        BASE + "checks:\n  - {name: a, kind: htp, target: backend}\n",
        ["{f}:5: checks[0]: unknown kind 'htp'; allowed: 'http', 'auth_contract', 'voice', 'db', 'postgrest'"],
    ),
    (
        "status_out_of_range",
        BASE + "checks:\n  - {name: a, kind: http, target: backend}\n"
        "  - {name: b, kind: http, target: backend}\n  - {name: c, kind: http, target: backend}\n"
        "  - {name: d, kind: http, target: backend, expect: {status: [200, 700]}}\n",
        ["{f}:8: checks[3].expect.status[1]: Input should be less than or equal to 599"],
    ),
    (
        "timeout_not_below_interval",
        BASE + "checks:\n  - {name: a, kind: http, target: backend, interval: 5s, timeout: 5s}\n",
        ["{f}:5: checks[0]: timeout (5s) must be less than interval (5s); lower timeout or raise interval"],
    ),
    (
        "unfilled_path_parameter",
        BASE + "checks:\n"
        "  - {name: a, kind: auth_contract, target: backend, path: '/api/v1/users/{user_id}/settings'}\n",
        ["{f}:5: checks[0]: path '/api/v1/users/{user_id}/settings' has placeholders with no value in params: "
         "user_id; add params: {user_id: ...}"],
    ),
    (
        "unknown_target",
        BASE + "checks:\n  - {name: a, kind: http, target: backnd}\n",
        ["{f}:5: checks[0].target: unknown target 'backnd'; defined targets: backend, database"],
    ),
    (
        "db_check_on_http_target",
        BASE + "checks:\n  - {name: a, kind: db, target: backend}\n",
        ["{f}:5: checks[0].target: kind db needs a PostgreSQL target (dsn), but target 'backend' has a base_url"],
    ),
    (
        "duplicate_names",
        BASE + "checks:\n  - {name: a, kind: http, target: backend}\n  - {name: a, kind: http, target: backend}\n",
        ["{f}:6: checks[1].name: duplicate check name 'a' (also checks[0]); names must be unique"],
    ),
    (
        "bad_duration",
        BASE + "defaults: {interval: soon}\n",
        ["{f}:4: defaults.interval: cannot read 'soon' as a duration; expected a number of seconds or a duration "
         "such as 500ms, 30s, 5m, 1h, 1h30m"],
    ),
    (
        "bad_listen",
        "listen: localhost\n",
        ["{f}:1: listen: must be host:port such as 127.0.0.1:9108 or [::1]:9108, got 'localhost'"],
    ),
    (
        "target_with_both",
        "targets:\n  x: {base_url: 'http://a', dsn: 'postgresql://b'}\n",
        ["{f}:2: targets.x: set exactly one of base_url (HTTP target) or dsn (PostgreSQL target)"],
    ),
    (
        "bad_regex",
        BASE + "checks:\n  - {name: a, kind: http, target: backend, expect: {body_regex: '(unclosed'}}\n",
        ["{f}:5: checks[0].expect.body_regex: is not a valid regular expression: missing ), unterminated subpattern "
         "at position 0"],
    ),
    (
        "sink_without_kind",
        "alerts:\n  sinks:\n    - {url: 'http://127.0.0.1:9093'}\n",
        ["{f}:3: alerts.sinks[0]: missing key 'kind'; allowed: alertmanager, pagerduty, slack, webhook"],
    ),
    (
        "unknown_top_level_key",
        "servce: x\n",
        ["{f}:1: servce: unknown key 'servce'; did you mean 'service'? allowed keys: alerts, checks, defaults, http, "
         "listen, log_level, service, shutdown_timeout, state_dir, targets"],
    ),
    (
        "bad_time_zone",
        "alerts:\n  maintenance:\n    - {start: '02:00', end: '03:00', days: [sun], timezone: Mars/Olympus}\n",
        ["{f}:3: alerts.maintenance[0].timezone: unknown time zone 'Mars/Olympus'; use an IANA name such as "
         "Europe/Berlin or UTC"],
    ),
    (
        "yaml_syntax",
        "checks: [\n  {name: a\n",
        ["{f}:3:1: not valid YAML: expected ',' or '}', but got '<stream end>'"],
    ),
    (
        "not_a_mapping",
        "- a\n- b\n",
        ["{f}: the top level must be a mapping of keys (service:, targets:, checks:, ...)"],
    ),
]


@pytest.mark.parametrize(("body", "expected"), [(b, e) for _, b, e in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_config_gives_exact_message(tmp_path: Path, body: str, expected: list[str]) -> None:
    """Each invalid file yields exactly the listed lines: file, line, field path, what is wrong, what is allowed."""
    path = _write(tmp_path, body)
    assert [line.replace("{f}", str(path)) for line in expected] == _problems(path)


def test_example_from_design_validates_with_its_variables_set() -> None:
    """The DESIGN §9 example, copied verbatim into examples/, loads with its two variables exported."""
    config = load_config(EXAMPLE, environ=EXAMPLE_ENV)
    assert ["backend_health", "voice_health", "settings_get_unauth", "settings_put_unauth", "db_roundtrip"] == [
        c.name for c in config.checks
    ]
    db = config.checks[4]
    assert isinstance(db, DbCheck)
    assert (30.0, 5.0) == (db.interval, db.timeout)
    assert ["user_id", "voice_enabled", "created_at", "updated_at"] == db.required_columns["user_settings"]


def test_missing_variable_is_named_with_the_fix() -> None:
    """An unset ${VAR} is an error naming the variable and its field, not a silently empty DSN."""
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, environ={"PAGERDUTY_ROUTING_KEY": "k"})
    assert [
        f"{EXAMPLE}:7: targets.database.dsn: environment variable DATABASE_URL is not set; "
        "export DATABASE_URL=... or write ${DATABASE_URL:-default}"
    ] == info.value.problems


def test_variable_default_and_secret_file(tmp_path: Path) -> None:
    """${VAR:-default} falls back, ${file:PATH} reads a secret file, and $$ is a literal dollar."""
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    path = _write(tmp_path, f"""\
        service: "${{SVC:-fallback}}$$"
        targets:
          pg: {{base_url: "http://127.0.0.1:1", api_key: "${{file:{secret}}}"}}
        """)
    config = load_config(path, environ={})
    assert "fallback$" == config.service
    api_key = config.targets["pg"].api_key
    assert api_key is not None
    assert "from-file" == api_key.get_secret_value()


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    """A wrong type next to a secret, or a bad secret itself, is reported without the secret's value."""
    path = _write(tmp_path, """\
        targets:
          db: {dsn: "mysql://root:TopSecretPw@host/db"}
        alerts:
          sinks:
            - {kind: slack, url: "not-a-url-SlackT0ken"}
            - {kind: pagerduty, routing_key: ["RoutingKeyInAList"]}
        """)
    problems = _problems(path)
    joined = "\n".join(problems)
    for secret in ("TopSecretPw", "SlackT0ken", "RoutingKeyInAList"):
        assert secret not in joined
    assert 3 == len(problems)


def test_environment_overrides_file_and_is_named_in_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PAM_MONITOR_* overrides nested keys; a bad override names its environment variable."""
    path = _write(tmp_path, BASE + "defaults: {interval: 30s}\nchecks:\n  - {name: a, kind: http, target: backend}\n")
    monkeypatch.setenv("PAM_MONITOR_DEFAULTS__INTERVAL", "10s")
    monkeypatch.setenv("PAM_MONITOR_LISTEN", "127.0.0.1:1")
    config = load_config(path, environ={})
    assert (10.0, "127.0.0.1:1") == (config.checks[0].interval, config.listen)
    monkeypatch.setenv("PAM_MONITOR_DEFAULTS__TIMEOUT", "never")
    assert [
        f"{path}:4: defaults.timeout: cannot read 'never' as a duration; expected a number of seconds or a duration "
        "such as 500ms, 30s, 5m, 1h, 1h30m (set by environment variable PAM_MONITOR_DEFAULTS__TIMEOUT)"
    ] == _problems(path)


def test_listen_argument_wins(tmp_path: Path) -> None:
    """--listen overrides the file."""
    path = _write(tmp_path, "listen: 127.0.0.1:9108\n")
    assert "0.0.0.0:9200" == load_config(path, listen="0.0.0.0:9200", environ={}).listen


def test_missing_file_says_so(tmp_path: Path) -> None:
    """A path that does not exist is one clear line."""
    missing = tmp_path / "nope.yaml"
    assert [f"{missing}: file not found; pass an existing file with --config"] == _problems(missing)


def test_defaults_fill_checks_and_checks_may_override(tmp_path: Path) -> None:
    """A check takes interval/timeout/thresholds from defaults unless it sets its own."""
    path = _write(tmp_path, BASE + "defaults: {interval: 1m, timeout: 2s, failure_threshold: 3}\n"
                  "checks:\n  - {name: a, kind: http, target: backend}\n"
                  "  - {name: b, kind: http, target: backend, interval: 10s, failure_threshold: 1}\n")
    a, b = load_config(path, environ={}).checks
    assert isinstance(a, HttpCheck)
    assert (60.0, 2.0, 3, 2) == (a.interval, a.timeout, a.failure_threshold, a.success_threshold)
    assert (10.0, 2.0, 1) == (b.interval, b.timeout, b.failure_threshold)


def test_collect_secrets_finds_dsn_password_and_keys() -> None:
    """Every secret of the config is collected, and the redactor built from them hides the DSN's password too."""
    secrets = collect_secrets(load_config(EXAMPLE, environ=EXAMPLE_ENV))
    assert {"R0UT1NGKEY", EXAMPLE_ENV["DATABASE_URL"]} <= secrets
    assert "auth failed for u:********** and **********" == Redactor(secrets).scrub(
        "auth failed for u:s3cr3t-pw and R0UT1NGKEY"
    )


def test_shards_partition_the_checks(tmp_path: Path) -> None:
    """--shard i/n splits checks by a stable hash: every check in exactly one shard."""
    body = BASE + "checks:\n" + "".join(f"  - {{name: c{i}, kind: http, target: backend}}\n" for i in range(40))
    config = load_config(_write(tmp_path, body), environ={})
    shards = [{c.name for c in apply_shard(config, i, 3).checks} for i in range(3)]
    assert 40 == sum(len(s) for s in shards)
    assert {c.name for c in config.checks} == set().union(*shards)
    assert (1, 3) == parse_shard("1/3")
    with pytest.raises(ValueError, match="--shard must be i/n"):
        parse_shard("3/3")


def test_dsn_passwords_from_url_query_and_conninfo() -> None:
    """Passwords are found in URL userinfo (raw and decoded), a ?password= query, and quoted conninfo."""
    from monitor.core.secrets import dsn_passwords

    assert {"p%40ss", "p@ss", "q1"} == dsn_passwords("postgresql://u:p%40ss@h/db?password=q1&sslmode=require")
    assert {"a b'c"} == dsn_passwords("host=h password='a b\\'c' user=x")
    assert set() == dsn_passwords("host=h user=x")
