"""Every option of every verb, given a hostile value: one line on stderr, exit 2, never a traceback.

The options are read from the real parser, so a verb or an option added later without hostile values here fails
`test_every_option_of_every_verb_has_hostile_values` until it gets some. The cases run as subprocesses, four at a
time; none gets as far as starting anything (the demo fails at option parsing).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from monitor.cli_args import build_parser
from tests.support.daemon import command

pytestmark = pytest.mark.process  # runs every verb of the CLI as a process

HUGE = "9" * 40
# {verb: {option: hostile values}}; "" holds the options taken before the verb. {dir}, {missing}, {binary} are
# replaced by a directory, a file that does not exist and a file that is not UTF-8.
HOSTILE: dict[str, dict[str, list[str]]] = {
    "": {"--log-format": ["fast", ""], "--log-level": ["fast", "-5"], "--config": ["{missing}"]},
    "run": {
        "--config": ["", "{dir}", "{missing}", "{binary}"],
        "--shard": ["5/3", "", "-5"],
        "--shards": ["fast", "0", HUGE],
        "--replicas-per-shard": ["-5", HUGE],
        "--listen": ["fast", "127.0.0.1:99999", ""],
        "--listen-base-port": ["10x", "0", "99999"],
        "--log-format": ["fast"],
        "--log-level": ["fast"],
    },
    "check": {
        "--config": ["", "{dir}", "{missing}", "{binary}"],
        "--shard": ["fast"],
        "--shards": ["-5"],
        "--replicas-per-shard": ["0"],
        "--only": ["", "fast"],
        "--format": ["fast", ""],
        "--log-format": ["10x"],
        "--log-level": [""],
    },
    "validate": {
        "--config": ["", "{dir}", "{missing}", "{binary}"],
        "--shard": ["5/3"],
        "--shards": [HUGE],
        "--replicas-per-shard": ["-5"],
    },
    "notify": {
        "--config": ["", "{dir}", "{missing}", "{binary}"],
        "--sink": ["", "fast"],
        "--log-format": ["fast"],
        "--log-level": ["fast"],
    },
    "demo": {
        "--listen": ["fast", "127.0.0.1:99999", "", "10x"],
        "--target-port": ["fast", "-5", "0", "99999", HUGE],
        "--interval": ["fast", "-5", "10x", "0", HUGE, "500ms"],
        "--alertmanager": ["fast", "", "ftp://x"],
        "--database-url": ["fast", "", "{dir}"],
        "--log-format": ["fast"],
        "--log-level": ["fast"],
    },
    "discover": {
        "--openapi": ["", "{dir}", "{missing}", "{binary}"],
        "--base-url": ["fast", "", "-5"],
        "--target": ["", "-5", "{dir}"],
        "--output": ["", "{dir}", "{missing}/x.yaml"],
        "--cors-origin": ["", "fast", "ftp://app.example.com", "https://app.example.com/path"],
        "--log-format": ["fast"],
        "--log-level": ["fast"],
    },
    "init": {
        "--openapi": ["", "{dir}", "{missing}", "{binary}"],
    },
    "rules": {
        "--config": ["", "{dir}", "{missing}", "{binary}"],
        "--job": ["", 'a"b', "a\nb"],
        "--output": ["{dir}", "{missing}/x.yaml"],
    },
}
# Options that take no value (flags) or only print: nothing hostile can be given to them.
FLAGS = {"--help", "--version", "--no-db", "--journeys", "--test", "--strict", "--force"}
# What a verb needs besides the option under test, so that only that option is wrong.
NEEDS: dict[str, list[str]] = {
    "run": ["--config", "{config}"], "check": ["--config", "{config}"], "validate": ["--config", "{config}"],
    "notify": ["--test", "--config", "{config}"], "demo": [], "discover": ["--openapi", "{openapi}"],
    # init: a PATH that does not exist, so the option under test is what is refused
    "init": ["{root}/init-out.yaml"], "rules": ["--config", "{config}"],
}
# A config file's problems are one line each, then one summary line (as validate documents it).
SUMMARY = "problem(s) in the configuration; nothing was started"


def _help(argv: list[str]) -> str:
    """What `pam-monitor ARGV --help` prints, read in-process from the real parser."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return out.getvalue()


def _options(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text.split("\nexit codes:")[0]))


def _verbs() -> dict[str, set[str]]:
    """Every verb (and "" for the options before one) and the long options its help lists."""
    top = _help([])
    listed = re.search(r"\nverbs:\n(.*?)\n\n", top, re.S)
    assert listed is not None, top
    verbs = re.findall(r"^    (\w+)\s", listed.group(1), re.M)
    return {"": _options(top.split("\nverbs:")[0]), **{verb: _options(_help([verb])) for verb in verbs}}


def test_every_option_of_every_verb_has_hostile_values() -> None:
    """HOSTILE covers every verb and every value-taking option of the real parser (so a new one must be added)."""
    found = {verb: options - FLAGS for verb, options in _verbs().items()}
    covered = {verb: set(options) for verb, options in HOSTILE.items()}
    assert found == covered


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A valid config (one http check on a closed port, one webhook sink), an OpenAPI document, a directory, a
    missing path and a non-UTF-8 file."""
    root = tmp_path_factory.mktemp("hostile")
    config = root / "pam-monitor.yaml"
    config.write_text(yaml.safe_dump({
        "service": "hostile", "state_dir": str(root / "state"),
        "targets": {"backend": {"base_url": "http://127.0.0.1:9"}},
        "checks": [{"name": "backend_health", "kind": "http", "target": "backend", "path": "/health"}],
        "alerts": {"sinks": [{"kind": "webhook", "name": "hook", "url": "http://127.0.0.1:9/hook"}]},
    }))
    openapi = root / "openapi.json"
    openapi.write_text('{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}')
    binary = root / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00 not utf-8")
    (root / "dir").mkdir()
    return {"config": str(config), "openapi": str(openapi), "dir": str(root / "dir"),
            "missing": str(root / "missing"), "binary": str(binary), "root": str(root)}


def _cases(files: dict[str, str]) -> list[tuple[str, str, list[str]]]:
    cases = []
    for verb, options in HOSTILE.items():
        for option, values in options.items():
            for value in values:
                given = value.format(**files)
                needs = NEEDS[verb] if verb else []
                if option in needs:  # the option under test stands in for the one the verb needs
                    at = needs.index(option)
                    needs = needs[:at] + needs[at + 2:]
                if verb:
                    argv = [verb, option, given, *(a.format(**files) for a in needs)]
                else:
                    argv = [option, given, "validate", *(["--config", files["config"]] if option != "--config" else [])]
                cases.append((verb, option, argv))
    return cases


def _run(argv: list[str], cwd: str) -> tuple[int | None, str]:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("PAM_MONITOR_") and k not in ("DATABASE_URL", "POD_NAME")}
    try:
        done = subprocess.run(command(*argv), capture_output=True, text=True, timeout=30, env=environ, cwd=cwd,
                              check=False)
    except subprocess.TimeoutExpired:  # accepted the value and started: the bad value was not refused
        return None, "timed out: the value was accepted and something started"
    return done.returncode, done.stderr


def test_hostile_values_are_one_line_and_exit_2(files: dict[str, str]) -> None:
    """Every hostile value of every option: exit 2, no traceback, one line on stderr (a config file's problem line
    plus the summary line for --config)."""
    cases = _cases(files)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda case: _run(case[2], files["root"]), cases))
    wrong = []
    for (verb, option, argv), (code, stderr) in zip(cases, answers, strict=True):
        lines = [line for line in stderr.splitlines() if line.strip()]
        if option == "--config" and len(lines) == 2 and SUMMARY in lines[1]:
            lines = lines[:1]
        if code != 2 or len(lines) != 1 or "Traceback" in stderr:
            wrong.append(f"{verb or '(top)'} {option} {argv[argv.index(option) + 1]!r}: exit {code}, "
                         f"{len(lines)} lines: {stderr.strip()[-300:]!r}")
    assert [] == wrong, "\n".join(wrong)
    assert len(cases) > 80  # the table is read, not skipped


def test_a_refused_value_names_the_option_and_never_starts_the_demo(tmp_path: Path) -> None:
    """The demo's refusals name the option and what it takes, and come before anything starts: no banner, no
    throwaway cluster, no temporary directory."""
    before = set(Path(tempfile.gettempdir()).glob("pam-monitor-demo-*"))
    code, stderr = _run(["demo", "--interval", "0"], str(tmp_path))
    assert (2, True, False) == (code, "--interval" in stderr and "1s" in stderr, "pam-monitor demo\n" in stderr)
    code, stderr = _run(["demo", "--target-port", "99999"], str(tmp_path))
    assert (2, True) == (code, "--target-port" in stderr and "1..65535" in stderr)
    assert before == set(Path(tempfile.gettempdir()).glob("pam-monitor-demo-*"))
