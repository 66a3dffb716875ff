"""monitor.core.config loading good files: the shipped example, ${VAR}, environment overrides, defaults, shards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.core.config import DbCheck, HttpCheck, apply_shard, load_config, parse_shard

BASE = """\
targets:
  backend: {base_url: "http://127.0.0.1:8000"}
  database: {dsn: "postgresql://app:hunter22@127.0.0.1/app"}
"""


def test_example_from_design_validates_with_its_variables_set(example_path: Path, example_env: dict[str, str]) -> None:
    """The shipped example, copied verbatim into examples/, loads with its two variables exported."""
    config = load_config(example_path, environ=example_env)
    assert ["backend_health", "voice_health", "settings_get_unauth", "settings_put_unauth", "db_roundtrip"] == [
        c.name for c in config.checks
    ]
    db = config.checks[4]
    assert isinstance(db, DbCheck)
    assert (30.0, 5.0) == (db.interval, db.timeout)
    assert ["user_id", "voice_enabled", "created_at", "updated_at"] == db.required_columns["user_settings"]


def test_variable_default_and_secret_file(tmp_path: Path, write_config: Callable[[str], Path]) -> None:
    """${VAR:-default} falls back, ${file:PATH} reads a secret file, and $$ is a literal dollar."""
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    path = write_config(f"""\
        service: "${{SVC:-fallback}}$$"
        targets:
          pg: {{base_url: "http://127.0.0.1:1", api_key: "${{file:{secret}}}"}}
        """)
    config = load_config(path, environ={})
    assert "fallback$" == config.service
    api_key = config.targets["pg"].api_key
    assert api_key is not None
    assert "from-file" == api_key.get_secret_value()


def test_environment_overrides_file_and_is_named_in_errors(
    write_config: Callable[[str], Path], config_problems: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PAM_MONITOR_* overrides nested keys; a bad override names its environment variable, never its value (a
    value from the environment may be a secret)."""
    path = write_config(BASE + "defaults: {interval: 30s}\nchecks:\n  - {name: a, kind: http, target: backend}\n")
    monkeypatch.setenv("PAM_MONITOR_DEFAULTS__INTERVAL", "10s")
    monkeypatch.setenv("PAM_MONITOR_LISTEN", "127.0.0.1:1")
    config = load_config(path, environ={})
    assert (10.0, "127.0.0.1:1") == (config.checks[0].interval, config.listen)
    monkeypatch.setenv("PAM_MONITOR_DEFAULTS__TIMEOUT", "never")
    assert [
        f"{path}:4: defaults.timeout: cannot read (value hidden) as a duration; expected a number of seconds or a "
        "duration such as 500ms, 30s, 5m, 1h, 1h30m (set by environment variable PAM_MONITOR_DEFAULTS__TIMEOUT)"
    ] == config_problems(path)


def test_listen_argument_wins(write_config: Callable[[str], Path]) -> None:
    """--listen overrides the file."""
    path = write_config("listen: 127.0.0.1:9108\n")
    assert "0.0.0.0:9200" == load_config(path, listen="0.0.0.0:9200", environ={}).listen


def test_defaults_fill_checks_and_checks_may_override(write_config: Callable[[str], Path]) -> None:
    """A check takes interval/timeout/thresholds from defaults unless it sets its own."""
    path = write_config(BASE + "defaults: {interval: 1m, timeout: 2s, failure_threshold: 3}\n"
                        "checks:\n  - {name: a, kind: http, target: backend}\n"
                        "  - {name: b, kind: http, target: backend, interval: 10s, failure_threshold: 1}\n")
    a, b = load_config(path, environ={}).checks
    assert isinstance(a, HttpCheck)
    assert (60.0, 2.0, 3, 2) == (a.interval, a.timeout, a.failure_threshold, a.success_threshold)
    assert (10.0, 2.0, 1) == (b.interval, b.timeout, b.failure_threshold)


def test_shards_partition_the_checks(write_config: Callable[[str], Path]) -> None:
    """--shard i/n splits checks by a stable hash: every check in exactly one shard."""
    body = BASE + "checks:\n" + "".join(f"  - {{name: c{i}, kind: http, target: backend}}\n" for i in range(40))
    config = load_config(write_config(body), environ={})
    shards = [{c.name for c in apply_shard(config, i, 3).checks} for i in range(3)]
    assert 40 == sum(len(s) for s in shards)
    assert {c.name for c in config.checks} == set().union(*shards)
    assert (1, 3) == parse_shard("1/3")
    with pytest.raises(ValueError, match="--shard must be i/n"):
        parse_shard("3/3")
