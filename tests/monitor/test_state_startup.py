"""Start-up with a state_dir the daemon cannot use: `run` says so in one line on stderr, with the path and the fix,
and exits 2 (state_dir cannot be created or written) or 3 (the database is unusable), no traceback; `validate`
reports the same problem as a config problem line and exits 2."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from alerts.persist.database import FILENAME, Store
from tests.support.daemon import command
from tests.support.servers import free_port

pytestmark = pytest.mark.process  # starts the daemon, a stand-in target or another binary as a process


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI, with no config from the environment."""
    env = {k: v for k, v in os.environ.items() if k != "PAM_MONITOR_CONFIG"}
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=60, cwd=cwd, env=env, check=False)


def config(tmp_path: Path, state_dir: Path) -> Path:
    """A valid config whose state_dir (line 2) is `state_dir`."""
    path = tmp_path / "c.yaml"
    path.write_text(f"service: t\nstate_dir: {state_dir}\ntargets:\n  backend: {{base_url: 'http://127.0.0.1:9'}}\n"
                    "checks:\n  - {name: health, kind: http, target: backend, path: /health}\n")
    return path


def not_a_directory(tmp_path: Path) -> Path:
    """state_dir below a regular file: it cannot be created."""
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "state"


def corrupt(tmp_path: Path) -> Path:
    """A database file that is not SQLite."""
    state = tmp_path / "state"
    state.mkdir()
    (state / FILENAME).write_bytes(b"garbage that is not a database " * 200)
    return state


def newer(tmp_path: Path) -> Path:
    """A database written by a later schema version."""
    state = tmp_path / "state"
    Store.open(state).close()
    db = sqlite3.connect(state / FILENAME)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    return state


def malformed(tmp_path: Path) -> Path:
    """A SQLite database whose outbox table has other columns."""
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / FILENAME)
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, what TEXT)")
    db.commit()
    db.close()
    return state


CASES: dict[str, tuple[Callable[[Path], Path], int, str, str]] = {
    # case: (make the state_dir, exit code of run, words of run's line, words of validate's line)
    "not_a_directory": (not_a_directory, 2, "cannot be created (Not a directory)",
                        "does not exist and cannot be created"),
    "corrupt": (corrupt, 3, "is corrupt", "is unusable"),
    "newer": (newer, 3, "newer pam-monitor", "newer pam-monitor"),
    "malformed": (malformed, 3, "is corrupt (table outbox has columns id, what", "table outbox has columns id, what"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_refuses_in_one_line_with_a_documented_code(tmp_path: Path, case: str) -> None:
    """`run` exits 2 or 3 with one line on stderr naming the path, what is wrong and what to do; no traceback."""
    make, code, words, _ = CASES[case]
    state = make(tmp_path)
    done = run("--log-format", "json", "run", "-c", str(config(tmp_path, state)), "--listen",
               f"127.0.0.1:{free_port()}", cwd=tmp_path)
    assert code == done.returncode, done.stderr
    lines = done.stderr.splitlines()
    assert 1 == len(lines), lines
    assert lines[0].startswith("pam-monitor: ")
    assert words in lines[0]
    assert str(state) in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_reports_state_dir_problems(tmp_path: Path, case: str) -> None:
    """`validate` checks state_dir (creating nothing) and reports a problem as `file:line: state_dir: ...`, exit 2."""
    make, _, _, words = CASES[case]
    state = make(tmp_path)
    path = config(tmp_path, state)
    done = run("validate", "-c", str(path), cwd=tmp_path)
    assert 2 == done.returncode
    lines = done.stderr.splitlines()
    assert 2 == len(lines), lines
    assert lines[0].startswith(f"{path}:2: state_dir: ")
    assert words in lines[0]
    assert "pam-monitor: 1 problem(s) in the configuration; nothing was started" == lines[1]


def test_validate_creates_nothing_and_accepts_a_creatable_state_dir(tmp_path: Path) -> None:
    """A state_dir that does not exist yet but can be created is fine, and validate does not create it."""
    state = tmp_path / "later" / "state"
    done = run("validate", "-c", str(config(tmp_path, state)), cwd=tmp_path)
    assert 0 == done.returncode, done.stderr
    assert not (tmp_path / "later").exists()
