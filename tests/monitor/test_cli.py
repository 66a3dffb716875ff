"""Tests for monitor.cli: help texts, errors and exit codes of every verb, and the check table/JSON on stdout."""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from monitor.cli import build_parser
from tests.support.daemon import command
from tests.support.servers import serve_asgi

pytestmark = pytest.mark.process  # runs the CLI, the daemon or a stand-in as a process

VERBS = ["run", "check", "validate", "notify", "demo", "discover", "init"]
HINT = ("pam-monitor: no config file; pass --config FILE or set PAM_MONITOR_CONFIG "
        "(write a starter with: pam-monitor init)")


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "PAM_MONITOR_CONFIG"} | (env or {})
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=60, cwd=cwd, env=environ)


def _app() -> Starlette:
    return Starlette(routes=[
        Route("/health", lambda r: JSONResponse({"status": "healthy"})),
        Route("/broken", lambda r: JSONResponse({"detail": "boom"}, status_code=500)),
    ])


def _config(tmp_path: Path, base: str, broken: bool) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(f"""\
        targets:
          backend: {{base_url: "{base}"}}
        checks:
          - {{name: health, kind: http, target: backend, path: /health, expect: {{json: {{status: healthy}}}}}}
        """) + ("  - {name: broken, kind: http, target: backend, path: /broken}\n" if broken else ""))
    return path


# A file with four problems of four kinds, in four checks: all of them must come out of one run.
MANY_PROBLEMS = """\
targets:
  backend: {base_url: "http://127.0.0.1:8000"}
  database: {dsn: "postgresql://app:${DB_PASSWORD}@127.0.0.1/app"}
checks:
  - {name: health, kind: http, target: backend, path: /health, timout: 5s}
  - {name: settings_get, kind: auth_contract, target: backend, path: /x, failure_threshold: "${THRESHOLD}"}
  - {name: db_roundtrip, kind: db, target: databse}
  - {name: voice, kind: voice, target: backend, interval: 5s, timeout: 10s}
  - {name: tts, kind: http, target: backend, expect: {status: [200, 2000]}}
"""
MANY_PROBLEMS_LINES = [
    "{f}:5: checks[0] (health).timout: unknown key 'timout'; did you mean 'timeout'? allowed keys: body, cors, "
    "dashboard_url, depends_on, disable_alerts, enabled, expect, failure_threshold, headers, interval, json, kind, "
    "labels, maintenance, method, name, params, path, query, runbook_url, slo, success_threshold, target, timeout",
    "{f}:6: checks[1] (settings_get).failure_threshold: must be a whole number from 1 to 100, got text "
    "(value not shown: it may be a secret)",
    "{f}:7: checks[2] (db_roundtrip).target: unknown target 'databse'; defined targets: backend, database",
    "{f}:8: checks[3] (voice): timeout (10s) must be less than interval (5s); lower timeout or raise interval",
    "{f}:9: checks[4] (tts).expect.status[1]: must be at most 599, got 2000",
    "pam-monitor: 5 problem(s) in the configuration; nothing was started",
]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_help_exits_zero_with_exit_codes_and_an_example(verb: str, tmp_path: Path) -> None:
    """`VERB --help` exits 0 and states the verb's exit codes and an example invocation."""
    done = _run(verb, "--help", cwd=tmp_path)
    assert 0 == done.returncode
    assert "exit codes:\n  0  " in done.stdout
    assert f"examples:\n  pam-monitor {verb}" in done.stdout
    assert "" == done.stderr


@pytest.mark.parametrize("verb", VERBS)
def test_every_option_states_its_default(verb: str) -> None:
    """Each option (and positional argument) of each verb says its default (or that it is required) in its help
    line."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[verb]
    helps = {(a.option_strings or [a.dest])[0]: a.help or "" for a in parser._actions
             if a.option_strings != ["-h", "--help"]}
    assert helps
    assert {} == {opt: text for opt, text in helps.items() if "(default:" not in text and "(required)" not in text}


def test_top_level_help_lists_each_verb_on_one_line(tmp_path: Path) -> None:
    """`pam-monitor --help` names every verb with a one-line description and the exit codes."""
    done = _run("--help", cwd=tmp_path)
    assert 0 == done.returncode
    lines = done.stdout.splitlines()
    for verb in VERBS:
        assert any(line.startswith(f"    {verb} ") and len(line.split()) > 3 for line in lines), verb
    assert "exit codes: 0 ok; 1 " in done.stdout


def test_options_that_do_nothing_are_not_offered(tmp_path: Path) -> None:
    """--listen is offered only where it is used (run, demo); validate takes no log options after the verb."""
    for verb in ("check", "validate"):
        done = _run(verb, "--listen", "127.0.0.1:1", cwd=tmp_path)
        assert (2, True) == (done.returncode, "unrecognized arguments: --listen" in done.stderr), verb
    done = _run("validate", "--help", cwd=tmp_path)
    assert "--log-format" not in done.stdout


def test_validate_ok_and_bad(tmp_path: Path) -> None:
    """validate prints a one-line summary and exits 0, or prints each problem and exits 2."""
    good = _config(tmp_path, "http://127.0.0.1:9", broken=True)
    done = _run("validate", "--config", str(good), cwd=tmp_path)
    assert (0, f"{good}: ok: 2 checks (0 disabled), 1 targets, 0 sinks\n") == (done.returncode, done.stdout)
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: {interval: 1s, timeout: 2s}\nchecks: []\n")
    done = _run("validate", "--config", str(bad), cwd=tmp_path)
    assert 2 == done.returncode
    assert done.stderr.splitlines()[0].startswith(f"{bad}:1: defaults")
    assert "" == done.stdout


def test_validate_lists_every_problem_in_one_run_without_secrets(tmp_path: Path) -> None:
    """Problems of four kinds in four checks all come out of one run, one line each, with the check's name;
    a value that came from ${VAR} is never printed."""
    path = tmp_path / "many.yaml"
    path.write_text(MANY_PROBLEMS)
    done = _run("validate", "--config", str(path), cwd=tmp_path,
                env={"DB_PASSWORD": "Hunter2Secret", "THRESHOLD": "TopSecretValue"})
    assert 2 == done.returncode
    assert [line.replace("{f}", str(path)) for line in MANY_PROBLEMS_LINES] == done.stderr.splitlines()
    assert "Secret" not in done.stderr


CASES: list[tuple[str, list[str], str, int, list[str]]] = [
    # (id, arguments, file body or "", expected exit code, lines expected on stderr; {f} is the file)
    ("empty_file", ["validate", "-c", "{f}"], "", 2, [
        "{f}: checks: the file has no checks, so there is nothing to watch; add a checks: list "
        "(write a starter with pam-monitor init, or pam-monitor init --openapi URL for your API's checks)",
        "pam-monitor: 1 problem(s) in the configuration; nothing was started",
    ]),
    ("missing_config_validate", ["validate"], "", 2, [HINT]),
    ("missing_config_check", ["check"], "", 2, [HINT]),
    ("missing_config_run", ["run"], "", 2, [HINT]),
    ("file_not_found", ["check", "-c", "{f}.nope"], "", 2, [
        "{f}.nope: file not found; pass an existing file with --config",
        "pam-monitor: 1 problem(s) in the configuration; nothing was started",
    ]),
    ("unknown_only", ["check", "-c", "{f}", "--only", "nope", "--only", "health"],
     "targets: {b: {base_url: 'http://127.0.0.1:9'}}\nchecks: [{name: health, kind: http, target: b}]\n", 2,
     ["pam-monitor: --only names unknown checks: nope"]),
    ("bad_shard", ["check", "-c", "{f}", "--shard", "2/2"],
     "targets: {b: {base_url: 'http://127.0.0.1:9'}}\nchecks: [{name: health, kind: http, target: b}]\n", 2,
     ["pam-monitor check: error: argument --shard: must be i/n (or i-of-n) with 0 <= i < n, such as 0/2, "
      "got '2/2'"]),
    ("bad_listen_for_run", ["run", "-c", "{f}", "--listen", "nowhere"],
     "targets: {b: {base_url: 'http://127.0.0.1:9'}}\nchecks: [{name: health, kind: http, target: b}]\n", 2,
     ["pam-monitor run: error: argument --listen: must be host:port such as 127.0.0.1:9108 or [::1]:9108, "
      "got 'nowhere'"]),
]


@pytest.mark.parametrize(("args", "body", "code", "lines"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_errors_and_exit_codes(tmp_path: Path, args: list[str], body: str, code: int, lines: list[str]) -> None:
    """Each mistake gives its exit code and exactly these lines on stderr (no traceback, nothing on stdout)."""
    path = tmp_path / "config.yaml"
    path.write_text(body)
    done = _run(*[a.replace("{f}", str(path)) for a in args], cwd=tmp_path)
    assert (code, [line.replace("{f}", str(path)) for line in lines], "") == (
        done.returncode, done.stderr.splitlines(), done.stdout)


def test_common_options_work_before_and_after_the_verb(tmp_path: Path) -> None:
    """--log-format, --log-level and --config may come before the verb; --config is refused where it means
    nothing."""
    good = _config(tmp_path, "http://127.0.0.1:9", broken=False)
    for args in (["--log-format", "console", "validate", "-c", str(good)],
                 ["--log-level", "debug", "--config", str(good), "validate"],
                 ["-c", str(good), "validate"]):
        done = _run(*args, cwd=tmp_path)
        assert (0, f"{good}: ok: 1 checks (0 disabled), 1 targets, 0 sinks\n") == (done.returncode, done.stdout), args
    done = _run("validate", cwd=tmp_path, env={"PAM_MONITOR_CONFIG": str(good)})
    assert 0 == done.returncode
    done = _run("--config", str(good), "discover", "--openapi", "x.json", cwd=tmp_path)
    assert (2, "pam-monitor: error: --config does not apply to discover") == (
        done.returncode, done.stderr.splitlines()[-1])


def test_log_options_before_the_verb_reach_the_verb(tmp_path: Path) -> None:
    """`pam-monitor --log-format json --log-level info check ...` logs JSON at info to stderr."""
    with serve_asgi(_app()) as base:
        done = _run("--log-format", "json", "--log-level", "info", "check", "-c",
                    str(_config(tmp_path, base, broken=True)), "--format", "json", cwd=tmp_path)
    assert 1 == done.returncode
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert {"check.transition"} <= {e["event"] for e in events}
    assert ["health", "broken"] == [c["name"] for c in json.loads(done.stdout)["checks"]]


def test_taken_listen_port_is_one_line_and_exit_one(tmp_path: Path) -> None:
    """`run` on a port someone else holds exits 1 with a single log line saying so, and no traceback."""
    config = _config(tmp_path, "http://127.0.0.1:9", broken=False)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = _run("--log-format", "console", "run", "-c", str(config), "--listen", f"127.0.0.1:{port}",
                    cwd=tmp_path)
    output = (done.stdout + done.stderr).splitlines()
    assert 1 == done.returncode
    assert 1 == len(output), output
    assert "daemon.listen_failed" in output[0]
    assert "Address already in use" in output[0]
    assert "Traceback" not in done.stderr


def test_check_exit_codes_and_json_shape(tmp_path: Path) -> None:
    """check exits 0 when all pass, 1 when one fails; JSON has exactly the documented keys and no alerts."""
    with serve_asgi(_app()) as base:
        ok = _run("check", "--config", str(_config(tmp_path, base, broken=False)), "--format", "json", cwd=tmp_path)
        failing = _run("check", "--config", str(_config(tmp_path, base, broken=True)), "--format", "json",
                       "--log-level", "debug", cwd=tmp_path)
        table = _run("check", "--config", str(_config(tmp_path, base, broken=True)), cwd=tmp_path)
    assert 0 == ok.returncode
    doc = json.loads(failing.stdout)  # stdout holds the JSON document only, whatever the log level
    assert 1 == failing.returncode
    assert ["checks"] == list(doc)
    assert {"name", "kind", "outcome", "success", "status_code", "duration_s", "message", "finished_at"} <= set(
        doc["checks"][1])
    assert ("broken", "server_error", 500) == (doc["checks"][1]["name"], doc["checks"][1]["outcome"],
                                              doc["checks"][1]["status_code"])
    assert 1 == table.returncode
    assert ["CHECK", "KIND", "OUTCOME", "STATUS", "TIME", "MESSAGE"] == table.stdout.splitlines()[0].split()
    assert "1 ok, 1 failed" == table.stdout.splitlines()[-1]


def test_check_at_a_terminal_keeps_logs_out_of_the_table(tmp_path: Path) -> None:
    """With stderr on a terminal, logs are console lines there (not JSON), and stdout holds only the table."""
    leader, follower = os.openpty()
    try:
        with serve_asgi(_app()) as base:
            proc = subprocess.Popen(
                command("check", "-c", str(_config(tmp_path, base, broken=True))), cwd=tmp_path,
                stdout=subprocess.PIPE, stderr=follower, text=True,
            )
            os.close(follower)
            follower = -1
            stdout, _ = proc.communicate(timeout=60)
        terminal = _drain(leader)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert 1 == proc.returncode
    assert ["CHECK", "KIND", "OUTCOME", "STATUS", "TIME", "MESSAGE"] == stdout.splitlines()[0].split()
    assert not any(line.lstrip().startswith("{") for line in stdout.splitlines())
    assert "check.transition" in terminal
    assert not any(line.lstrip().startswith("{") for line in terminal.splitlines())


def _drain(fd: int) -> str:
    """Everything written to a pty so far (the writer has exited)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
