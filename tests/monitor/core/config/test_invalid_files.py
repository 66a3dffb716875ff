"""monitor.core.config refusing bad files: the table of invalid files and their exact messages, never a secret."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.core.config import load_config
from monitor.core.errors import ConfigError

BASE = """\
targets:
  backend: {base_url: "http://127.0.0.1:8000"}
  database: {dsn: "postgresql://app:hunter22@127.0.0.1/app"}
"""


# Each row: the file body, then the exact problem lines (with {f} standing for the file's path).
INVALID: list[tuple[str, str, list[str]]] = [
    (
        "typo_in_check_key",
        BASE + "checks:\n  - {name: a, kind: http, target: backend, timout: 5s}\n",
        ["{f}:5: checks[0] (a).timout: unknown key 'timout'; did you mean 'timeout'? allowed keys: body, cors, "
         "dashboard_url, depends_on, disable_alerts, enabled, expect, failure_threshold, headers, interval, json, "
         "kind, labels, maintenance, method, name, params, path, query, runbook_url, slo, success_threshold, target, "
         "timeout"],
    ),
    (
        "unknown_kind",
        BASE + "checks:\n  - {name: a, kind: htp, target: backend}\n",
        ["{f}:5: checks[0] (a): unknown kind 'htp'; allowed: 'http', 'auth_contract', 'voice', 'db', 'postgrest', "
         "'journey', 'tenant_isolation', 'heartbeat'"],
    ),
    (
        "status_out_of_range",
        BASE + "checks:\n  - {name: a, kind: http, target: backend}\n"
        "  - {name: b, kind: http, target: backend}\n  - {name: c, kind: http, target: backend}\n"
        "  - {name: d, kind: http, target: backend, expect: {status: [200, 700]}}\n",
        ["{f}:8: checks[3] (d).expect.status[1]: must be at most 599, got 700"],
    ),
    (
        "timeout_not_below_interval",
        BASE + "checks:\n  - {name: a, kind: http, target: backend, interval: 5s, timeout: 5s}\n",
        ["{f}:5: checks[0] (a): timeout (5s) must be less than interval (5s); lower timeout or raise interval"],
    ),
    (
        "unfilled_path_parameter",
        BASE + "checks:\n"
        "  - {name: a, kind: auth_contract, target: backend, path: '/api/v1/users/{user_id}/settings'}\n",
        ["{f}:5: checks[0] (a): path '/api/v1/users/{user_id}/settings' has placeholders with no value in params: "
         "user_id; add params: {user_id: ...}"],
    ),
    (
        "depends_on_unknown_and_self",
        BASE + "checks:\n  - {name: a, kind: http, target: backend, depends_on: [a, nope]}\n",
        ["{f}:5: checks[0] (a).depends_on[0]: a check cannot depend on itself",
         "{f}:5: checks[0] (a).depends_on[1]: no check is named 'nope'; known checks: none"],
    ),
    (
        "dependency_loop_through_health_check",
        "targets:\n  backend: {base_url: 'http://127.0.0.1:8000', health_check: h}\n"
        "checks:\n  - {name: h, kind: http, target: backend, depends_on: [b]}\n"
        "  - {name: b, kind: http, target: backend}\n",
        ["{f}:4: checks[0] (h).depends_on: dependencies loop: b -> h -> b; a root check must not depend on the "
         "checks that depend on it"],
    ),
    (
        "health_check_on_another_target",
        BASE.replace("8000\"}", "8000\", health_check: d}") + "checks:\n  - {name: d, kind: db, target: database}\n",
        ["{f}:2: targets.backend.health_check: check 'd' is on target 'database', not 'backend'; a health check "
         "must probe its own target"],
    ),
    (
        "max_rate_without_unit",
        BASE.replace("8000\"}", "8000\", max_rate: 40}") + "checks:\n  - {name: a, kind: http, target: backend}\n",
        ["{f}:2: targets.backend.max_rate: expected a rate such as 40/m, 2/s or 1000/h (requests per second, "
         "minute or hour), got a bare number 40: say per what, e.g. 40/m"],
    ),
    (
        "unknown_target",
        BASE + "checks:\n  - {name: a, kind: http, target: backnd}\n",
        ["{f}:5: checks[0] (a).target: unknown target 'backnd'; defined targets: backend, database"],
    ),
    (
        "db_check_on_http_target",
        BASE + "checks:\n  - {name: a, kind: db, target: backend}\n",
        ["{f}:5: checks[0] (a).target: kind db needs a PostgreSQL target (dsn), but target 'backend' has a base_url"],
    ),
    (
        "duplicate_names",
        BASE + "checks:\n  - {name: a, kind: http, target: backend}\n  - {name: a, kind: http, target: backend}\n",
        ["{f}:6: checks[1] (a).name: duplicate check name 'a' (also checks[0]); names must be unique"],
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
        ["{f}:5: checks[0] (a).expect.body_regex: is not a valid regular expression: missing ), unterminated "
         "subpattern at position 0, got '(unclosed'"],
    ),
    (
        "sink_without_kind",
        "alerts:\n  sinks:\n    - {url: 'http://127.0.0.1:9093'}\n",
        ["{f}:3: alerts.sinks[0]: missing key 'kind'; allowed: alertmanager, pagerduty, slack, webhook"],
    ),
    (
        "certificate_bands_reversed",
        "alerts:\n  cert_warning: 2d\n  cert_critical: 3d\n",
        ["{f}:1: alerts: cert_critical (3d) must be above 0 and below cert_warning (2d); e.g. cert_warning: 14d, "
         "cert_critical: 3d"],
    ),
    (
        "certificate_alert_severity_overridden",
        "alerts:\n  rules:\n    CertificateExpiring: {severity: critical}\n",
        ["{f}:2: alerts.rules: CertificateExpiring.severity cannot be set: its severity is warning under "
         "alerts.cert_warning and critical under alerts.cert_critical; change those durations instead (or set "
         "enabled: false)"],
    ),
    (
        "unknown_top_level_key",
        "servce: x\n",
        ["{f}:1: servce: unknown key 'servce'; did you mean 'service'? allowed keys: alerts, checks, dashboard_url, "
         "defaults, external_url, http, identities, listen, log_level, metrics, runbook_url, service, "
         "shutdown_timeout, slos, state_dir, targets"],
    ),
    (
        "unknown_metrics_detail_family",
        "metrics: {detail: [outcome_onehot, phase_histogram]}\n",
        ["{f}:1: metrics.detail[1]: must be one of 'outcome_onehot' or 'duration_histogram', got text (value not "
         "shown: it may be a secret)"],
    ),
    (
        "heartbeat_token_too_short",
        "checks:\n  - {name: nightly, kind: heartbeat, interval: 1h, token: x9y8z7}\n",
        ["{f}:2: checks[0] (nightly).token: is shorter than 16 characters; use a random one (`openssl rand -hex 16`), "
         "from the environment (\"${VAR}\") or a file (\"${file:/path}\")"],
    ),
    (
        "heartbeat_with_a_target",
        BASE + "checks:\n  - {name: nightly, kind: heartbeat, target: backend, token: 0123456789abcdef0123}\n",
        ["{f}:5: checks[0] (nightly).target: a heartbeat check has no target (its job calls the daemon); remove "
         "`target`, got 'backend'"],
    ),
    (
        "runbook_url_unknown_placeholder",
        'runbook_url: "https://wiki.example.com/{team}/{alertname}"\n',
        ["{f}:1: runbook_url: has unknown placeholder 'team'; use {check}, {target} or {alertname}, got "
         "'https://wiki.example.com/{team}/{alertname}'"],
    ),
    (
        "runbook_url_format_spec",
        'targets:\n  backend: {base_url: "http://127.0.0.1:8000", runbook_url: "https://wiki/{check!r}"}\n',
        ["{f}:2: targets.backend.runbook_url: has a placeholder with a conversion or format spec; write it plain: "
         "{check}, {target} or {alertname}, got 'https://wiki/{check!r}'"],
    ),
    (
        "runbook_url_broken_brace",
        BASE + 'checks:\n  - {name: a, kind: http, target: backend, runbook_url: "https://wiki/{check"}\n',
        ["{f}:5: checks[0] (a).runbook_url: is not a valid template (expected '}' before end of string); write "
         "placeholders as {check}, {target}, {alertname} and a literal brace as {{ or }}, got 'https://wiki/{check'"],
    ),
    (
        "dashboard_url_relative",
        'dashboard_url: "grafana/d/{check}"\n',
        ["{f}:1: dashboard_url: must be an absolute http:// or https:// URL, got 'grafana/d/{check}'"],
    ),
    (
        "external_url_without_scheme",
        "external_url: status.example.com\n",
        ["{f}:1: external_url: must be an absolute http:// or https:// URL, got 'status.example.com'"],
    ),
    (
        "slo_window_without_history",
        BASE + "checks:\n  - {name: a, kind: http, target: backend, slo: {objective: 99.9%, window: 28d}}\n",
        ["{f}:5: checks[0] (a).slo.window: must be one of 1h, 24h, 7d, 30d (the windows pam-monitor keeps history "
         "for), got '28d'"],
    ),
    (
        "slo_objective_of_100_percent",
        BASE + "checks:\n  - {name: a, kind: http, target: backend, slo: {objective: 100%}}\n",
        ["{f}:5: checks[0] (a).slo.objective: must be less than 1, got '100%'"],
    ),
    (
        "slo_burn_short_window_not_shorter",
        BASE + "checks:\n  - {name: a, kind: http, target: backend, slo: {objective: 99%, alerts: "
        "[{severity: critical, factor: 2, long: 5m, short: 1h}]}}\n",
        ["{f}:5: checks[0] (a).slo.alerts[0]: short must be less than long (the short window confirms the burn is "
         "still going on)"],
    ),
    (
        "slo_group_names_an_unknown_check",
        BASE + "checks:\n  - {name: a, kind: http, target: backend}\nslos:\n  site: {checks: [a, b], objective: "
        "99.9%}\n",
        ["{f}:7: slos.site.checks[1]: no check is named 'b'; known checks: a"],
    ),
    (
        "metrics_detail_family_twice",
        "metrics: {detail: [duration_histogram, duration_histogram]}\n",
        ["{f}:1: metrics.detail: lists a family twice; name each of outcome_onehot, duration_histogram at most once"],
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
    (
        "postgrest_database_not_a_dsn_target",
        BASE + "checks:\n  - {name: a, kind: postgrest, target: backend, required_tables: [x], database: backend}\n"
        "  - {name: b, kind: postgrest, target: backend, required_tables: [x], database: nope}\n",
        ["{f}:5: checks[0] (a).database: target 'backend' has no dsn; name a PostgreSQL target of the same database "
         "(targets with a dsn: database)",
         "{f}:6: checks[1] (b).database: unknown target 'nope'; name a PostgreSQL target of the same database "
         "(targets with a dsn: database)"],
    ),
    (
        "db_migrations_dir_missing",
        BASE + "checks:\n  - {name: a, kind: db, target: database, migrations: {dir: /nonexistent/migrations}}\n",
        ["{f}:5: checks[0] (a).migrations.dir: '/nonexistent/migrations' is not a directory (give the repository's "
         "supabase/migrations path; a relative path is resolved from the daemon's working directory)"],
    ),
]


@pytest.mark.parametrize(("body", "expected"), [(b, e) for _, b, e in INVALID], ids=[n for n, _, _ in INVALID])
def test_invalid_config_gives_exact_message(
    write_config: Callable[[str], Path], config_problems: Callable[..., list[str]], body: str, expected: list[str]
) -> None:
    """Each invalid file yields exactly the listed lines: file, line, field path, what is wrong, what is allowed."""
    path = write_config(body)
    assert [line.replace("{f}", str(path)) for line in expected] == config_problems(path)


def test_missing_variable_is_named_with_the_fix(example_path: Path) -> None:
    """An unset ${VAR} is an error naming the variable and its field (at the line that reads it), not a silently
    empty DSN."""
    with pytest.raises(ConfigError) as info:
        load_config(example_path, environ={"PAGERDUTY_ROUTING_KEY": "k"})
    lines = example_path.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.lstrip().startswith("database: {dsn:"))
    assert [
        f"{example_path}:{line}: targets.database.dsn: environment variable DATABASE_URL is not set; "
        "export DATABASE_URL=... or write ${DATABASE_URL:-default}"
    ] == info.value.problems


def test_secret_values_are_never_echoed(
    write_config: Callable[[str], Path], config_problems: Callable[..., list[str]]
) -> None:
    """A wrong type next to a secret, or a bad secret itself, is reported without the secret's value."""
    path = write_config("""\
        targets:
          db: {dsn: "mysql://root:TopSecretPw@host/db"}
        alerts:
          sinks:
            - {kind: slack, url: "not-a-url-SlackT0ken"}
            - {kind: pagerduty, routing_key: ["RoutingKeyInAList"]}
        """)
    problems = config_problems(path)
    joined = "\n".join(problems)
    for secret in ("TopSecretPw", "SlackT0ken", "RoutingKeyInAList"):
        assert secret not in joined
    assert 3 == len(problems)


def test_missing_file_says_so(tmp_path: Path, config_problems: Callable[..., list[str]]) -> None:
    """A path that does not exist is one clear line."""
    missing = tmp_path / "nope.yaml"
    assert [f"{missing}: file not found; pass an existing file with --config"] == config_problems(missing)
