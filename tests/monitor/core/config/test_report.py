"""monitor.core.config.report: every problem in one run, check names in paths, values shown unless maybe secret."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from monitor.core.config import load_config
from monitor.core.errors import ConfigError

BASE = """\
targets:
  backend: {base_url: "http://127.0.0.1:8000"}
  database: {dsn: "postgresql://app@127.0.0.1/app"}
"""


def _problems(tmp_path: Path, body: str, environ: dict[str, str] | None = None, **kwargs: object) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(body))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {}, **kwargs)  # type: ignore[arg-type]
    return [p.replace(str(path), "{f}") for p in info.value.problems]


# Each row: the file body, then the exact lines ({f} is the file).
CASES: list[tuple[str, str, list[str]]] = [
    ("wrong_type_names_check_and_value", BASE + "checks:\n  - {name: a, kind: http, target: backend}\n"
     "  - {name: settings_get, kind: http, target: backend, failure_threshold: many}\n",
     ["{f}:6: checks[1] (settings_get).failure_threshold: must be a whole number from 1 to 100, got 'many'"]),
    ("literal_with_suggestion",
     BASE + "checks:\n  - {name: a, kind: auth_contract, target: backend, forged: [garbge]}\n",
     ["{f}:5: checks[0] (a).forged[0]: must be one of 'garbage', 'wrong_signature', 'alg_none' or 'expired', "
      "got 'garbge'; did you mean 'garbage'?"]),
    ("scalar_where_a_list_goes",
     BASE + "checks:\n  - {name: a, kind: auth_contract, target: backend, forged: alg_none}\n",
     ["{f}:5: checks[0] (a).forged: must be a list, got 'alg_none'; write [alg_none]"]),
    ("validator_message_gains_the_value", BASE + "checks:\n  - {name: a, kind: http, target: backend, interval: 50ms, "
     "timeout: 10ms}\n",
     ["{f}:5: checks[0] (a).interval: must be at least 100ms, got '50ms'"]),
    ("bool_and_text", "log_level: loud\nlisten: 9108\nchecks:\n  - {name: a, kind: http, target: b, enabled: maybe}\n",
     ["{f}:1: log_level: must be one of 'debug', 'info', 'warning' or 'error', got 'loud'",
      "{f}:2: listen: must be text (a string), got 9108",
      "{f}:4: checks[0] (a).enabled: must be true or false, got 'maybe'",
      "{f}:4: checks[0] (a).target: unknown target 'b'; defined targets: none defined"]),
    ("cross_rules_run_beside_type_errors", BASE + "checks:\n"
     "  - {name: a, kind: http, target: backend, expect: {status: '200'}}\n"
     "  - {name: a, kind: db, target: backend}\n  - {name: c, kind: http, target: database}\n",
     ["{f}:5: checks[0] (a).expect.status: must be a list, got '200'; write ['200']",
      "{f}:6: checks[1] (a).name: duplicate check name 'a' (also checks[0]); names must be unique",
      "{f}:6: checks[1] (a).target: kind db needs a PostgreSQL target (dsn), but target 'backend' has a base_url",
      "{f}:7: checks[2] (c).target: kind http needs an HTTP target (base_url), but target 'database' has a dsn"]),
    ("invalid_target_is_still_defined", "targets:\n  backend: {base_url: 'ftp://x'}\n"
     "checks:\n  - {name: a, kind: http, target: backend}\n",
     ["{f}:2: targets.backend.base_url: must be an absolute http:// or https:// URL such as http://127.0.0.1:8000, "
      "got 'ftp://x'"]),
    ("a_name_that_is_not_a_name_is_not_shown", BASE + "checks:\n  - {name: 'my check', kind: http, target: backend, "
     "timeout: soon}\n",
     ["{f}:5: checks[0].name: has characters that are not allowed; must match ^[A-Za-z_][A-Za-z0-9_.-]{0,63}$, "
      "got 'my check'",
      "{f}:5: checks[0].timeout: cannot read 'soon' as a duration; expected a number of seconds or a duration such "
      "as 500ms, 30s, 5m, 1h, 1h30m"]),
]


@pytest.mark.parametrize(("body", "expected"), [(b, e) for _, b, e in CASES], ids=[n for n, _, _ in CASES])
def test_problem_lines(tmp_path: Path, body: str, expected: list[str]) -> None:
    """Each file yields exactly these lines: where, the path with the check's name, what was given, what is allowed."""
    assert expected == _problems(tmp_path, body)


def test_values_from_variables_files_and_secret_fields_are_never_shown(tmp_path: Path) -> None:
    """A bad value that came from ${VAR} or ${file:...}, or was given to a secret field, is described, not shown."""
    secret = tmp_path / "threshold"
    secret.write_text("FileSecret9\n")
    body = f"""\
        targets:
          backend: {{base_url: "http://127.0.0.1:8000"}}
          db: "postgresql://u:PlainPw1@h/db"
        checks:
          - {{name: a, kind: http, target: backend, interval: "${{IV}}"}}
          - {{name: b, kind: http, target: backend, success_threshold: "${{file:{secret}}}"}}
          - {{name: c, kind: http, target: backend, headers: {{Authorization: ["Bearer ListedT0ken"]}}}}
        """
    problems = _problems(tmp_path, body, environ={"IV": "EnvSecret7"})
    assert [
        "{f}:3: targets.db: must be a mapping (key: value) with keys among: api_key, base_url, bearer_token, ca_file, "
        "dsn, headers, health_check, max_rate, max_routes_per_minute, proxy_url, runbook_url, verify_tls; got text "
        "(value not shown: it may be a secret)",
        "{f}:5: checks[0] (a).interval: cannot read (value hidden) as a duration; expected a number of seconds or a "
        "duration such as 500ms, 30s, 5m, 1h, 1h30m",
        "{f}:6: checks[1] (b).success_threshold: must be a whole number from 1 to 100, got text (value not shown: it "
        "may be a secret)",
        "{f}:7: checks[2] (c).headers.Authorization: must be text (a string), got a list (value not shown: it may be "
        "a secret)",
    ] == problems
    for leaked in ("FileSecret9", "EnvSecret7", "PlainPw1", "ListedT0ken"):
        assert leaked not in "\n".join(problems)


def test_unset_variable_does_not_hide_the_other_problems(tmp_path: Path) -> None:
    """An unset ${VAR} is reported once (not again as an empty value) beside the file's other problems."""
    body = BASE.replace("postgresql://app@127.0.0.1/app", "${DATABASE_URL}") + (
        "checks:\n  - {name: a, kind: db, target: database, timeout: never}\n"
        "  - {name: b, kind: http, target: backnd}\n")
    assert [
        "{f}:3: targets.database.dsn: environment variable DATABASE_URL is not set; export DATABASE_URL=... or write "
        "${DATABASE_URL:-default}",
        "{f}:5: checks[0] (a).timeout: cannot read 'never' as a duration; expected a number of seconds or a duration "
        "such as 500ms, 30s, 5m, 1h, 1h30m",
        "{f}:6: checks[1] (b).target: unknown target 'backnd'; defined targets: backend, database",
    ] == _problems(tmp_path, body)


def test_target_defined_by_environment_is_known_to_the_cross_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target that only PAM_MONITOR_TARGETS__... defines is not called unknown while other parts are invalid."""
    monkeypatch.setenv("PAM_MONITOR_TARGETS__EXTRA__BASE_URL", "http://127.0.0.1:9")
    body = BASE + "checks:\n  - {name: a, kind: http, target: extra}\n  - {name: b, kind: http, target: nope, " \
                  "enabled: maybe}\n"
    assert [
        "{f}:6: checks[1] (b).enabled: must be true or false, got 'maybe'",
        "{f}:6: checks[1] (b).target: unknown target 'nope'; defined targets: backend, database, extra",
    ] == _problems(tmp_path, body)


def test_a_file_without_checks_is_a_problem_when_checks_are_required(tmp_path: Path) -> None:
    """require_checks (the CLI's verbs) turns an empty file into one line pointing at an example; the loader alone
    still accepts it (a daemon's defaults)."""
    expected = ["{f}: checks: the file has no checks, so there is nothing to watch; add a checks: list "
                "(write a starter with pam-monitor init, or pam-monitor init --openapi URL for your API's checks)"]
    assert expected == _problems(tmp_path, "", require_checks=True)
    assert expected == _problems(tmp_path, BASE + "checks: []\n", require_checks=True)
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert [] == load_config(path, environ={}).checks
