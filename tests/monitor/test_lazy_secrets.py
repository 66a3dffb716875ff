"""Secrets resolve lazily: a verb needs only the `${VAR}`s of the parts it uses.

`notify --test --sink hook` needs only that sink's; `check --only X` only X's target and identity (and its
dependencies'); `run` and `check` every one; `validate` reports every unset one, as a warning (exit 0) when the file
is otherwise valid, and as a problem with --strict.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.core.config import load_config
from monitor.core.config.loader import Scope, UnsetVariables
from monitor.core.errors import ConfigError
from tests.support.alerting import Recorder
from tests.support.daemon import command
from tests.support.servers import serve_asgi

pytestmark = pytest.mark.process  # runs the CLI as a process

SECRETS = ("DB_URL", "PD_KEY", "SLACK_URL", "JWT_SECRET", "HOOK_TOKEN")


def write(tmp_path: Path, hook: str = "http://127.0.0.1:9/hook", backend: str = "http://127.0.0.1:9") -> Path:
    """A config whose every part but the webhook sink and the backend's http check needs a variable."""
    path = tmp_path / "pam-monitor.yaml"
    path.write_text(yaml.safe_dump({
        "service": "lazy", "state_dir": str(tmp_path / "state"),
        "targets": {"backend": {"base_url": backend, "health_check": "health"},
                    "database": {"dsn": "${DB_URL}"}},
        "identities": {"user": {"mint": {"secret": "${JWT_SECRET}", "sub": "u1"}}},
        "checks": [
            {"name": "health", "kind": "http", "target": "backend", "path": "/health"},
            {"name": "db", "kind": "db", "target": "database"},
            {"name": "isolation", "kind": "tenant_isolation", "target": "backend", "identity": "user",
             "path": "/users/{user_id}", "params": {"user_id": "other"}},
        ],
        "alerts": {"sinks": [
            {"kind": "webhook", "name": "hook", "url": hook},
            {"kind": "pagerduty", "routing_key": "${PD_KEY}"},
            {"kind": "slack", "url": "${SLACK_URL}"},
        ]},
    }))
    return path


def line_of(path: Path, text: str) -> int:
    """The 1-based line of the file holding `text`."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("PAM_MONITOR_")}
    return subprocess.run(command(*argv), capture_output=True, text=True, timeout=60, env=environ, cwd=str(cwd),
                          check=False)


def test_a_scope_resolves_only_its_parts(tmp_path: Path) -> None:
    """load_config with a scope: the checks named (with the health check they depend on), their target and
    identity, the sink named; the others are left out and their unset variables are no problem."""
    path = write(tmp_path)
    only_health = load_config(path, environ={}, scope=Scope(checks=frozenset({"health"}), sinks=""))
    assert (["health"], ["backend"], [], []) == (
        [c.name for c in only_health.checks], list(only_health.targets), list(only_health.identities),
        only_health.alerts.sinks)
    hook_only = load_config(path, environ={}, scope=Scope(checks=frozenset(), sinks="hook"))
    assert ([], ["hook"]) == ([c.name for c in hook_only.checks], [s.display_name for s in hook_only.alerts.sinks])
    isolation = load_config(path, environ={"JWT_SECRET": "j" * 40},
                            scope=Scope(checks=frozenset({"isolation"}), sinks=""))
    assert (["health", "isolation"], ["user"]) == (
        sorted(c.name for c in isolation.checks), list(isolation.identities))


def test_a_scope_still_needs_its_own_variables(tmp_path: Path) -> None:
    """An unset variable inside the scope is still a problem, named with its file line; without a scope (run,
    check) every unset variable is one."""
    path = write(tmp_path)
    with pytest.raises(ConfigError) as in_scope:
        load_config(path, environ={}, scope=Scope(checks=frozenset({"isolation"}), sinks=""))
    assert [f"{path}:{line_of(path, '${JWT_SECRET}')}: identities.user.mint.secret: environment variable JWT_SECRET "
            "is not set; export JWT_SECRET=... or write ${JWT_SECRET:-default}"] == in_scope.value.problems
    with pytest.raises(ConfigError) as everything:
        load_config(path, environ={})
    assert 4 == len(everything.value.problems)


def test_lenient_load_says_which_variables_are_unset(tmp_path: Path) -> None:
    """lenient: a file valid but for unset variables raises UnsetVariables listing each (and the document);
    a file with a real problem besides still raises ConfigError with that problem."""
    path = write(tmp_path)
    with pytest.raises(UnsetVariables) as unset:
        load_config(path, environ={}, lenient=True)
    assert (["DB_URL", "JWT_SECRET", "PD_KEY", "SLACK_URL"], 3) == (
        sorted(line.split("environment variable ")[1].split()[0] for line in unset.value.problems),
        len(unset.value.document["checks"]))
    broken = path.read_text().replace("kind: http", "kind: nope")
    path.write_text(broken)
    with pytest.raises(ConfigError) as problem:
        load_config(path, environ={}, lenient=True)
    assert (False, True) == (isinstance(problem.value, UnsetVariables),
                             any("nope" in line for line in problem.value.problems))


def test_notify_one_sink_needs_only_its_secrets(tmp_path: Path) -> None:
    """`notify --test --sink hook` with none of the other parts' variables set: the webhook (a real local server)
    gets the test notification, exit 0; without --sink the unset secrets of the other sinks are problems, exit 2,
    and nothing is sent."""
    recorder = Recorder()
    with serve_asgi(recorder.app()) as base:
        path = write(tmp_path, hook=f"{base}/hook")
        done = run("notify", "--test", "--sink", "hook", "--config", str(path), cwd=tmp_path)
        assert (0, ["/hook"]) == (done.returncode, recorder.paths()), done.stderr
        every = run("notify", "--test", "--config", str(path), cwd=tmp_path)
        assert (2, ["/hook"], True) == (every.returncode, recorder.paths(), "PD_KEY is not set" in every.stderr)
        assert "DB_URL" not in every.stderr  # the database is no sink's business


def test_check_only_needs_only_that_checks_target(tmp_path: Path) -> None:
    """`check --only health` runs with no variable set (its target needs none); `check` without --only needs
    them all (exit 2 naming each), as run does."""
    recorder = Recorder()
    with serve_asgi(recorder.app()) as base:
        path = write(tmp_path, backend=base)
        only = run("check", "--only", "health", "--config", str(path), "--format", "json", cwd=tmp_path)
        every = run("check", "--config", str(path), cwd=tmp_path)
    # The stand-in answers 405 to GET /health: the check ran (exit 1, a failing check), which is all this asks.
    ran = [c["name"] for c in json.loads(only.stdout or "{}").get("checks", [])]
    assert (1, ["health"]) == (only.returncode, ran), only.stderr[-500:]
    assert (2, 4) == (every.returncode, every.stderr.count("is not set"))


def test_validate_warns_on_unset_variables_and_strict_fails(tmp_path: Path) -> None:
    """`validate` on a file valid but for unset variables: each is a warning line (file:line), then the ok line,
    exit 0; `validate --strict`: the same lines are problems, exit 2."""
    path = write(tmp_path)
    lenient = run("validate", "--config", str(path), cwd=tmp_path)
    warnings = [line for line in lenient.stderr.splitlines() if line.startswith("warning: ")]
    where = f"{path}:{line_of(path, '${DB_URL}')}: targets.database.dsn: environment variable DB_URL is not set"
    assert (0, 4, True) == (lenient.returncode, len(warnings), any(where in line for line in warnings))
    assert f"{path}: ok: 3 checks (0 disabled), 2 targets, 3 sinks" == lenient.stdout.strip()
    strict = run("validate", "--strict", "--config", str(path), cwd=tmp_path)
    assert (2, 4) == (strict.returncode, strict.stderr.count("is not set"))
