"""scripts/test installs nothing on the system without --install (or CI=true), stops in one line naming what is
missing and the command that installs it, says each step on stderr in one line, and is safe to re-run; .ci/run
passes --install and fails loudly. Run on a copy of the script with stand-in commands (apt-get, sudo, python3, the
.venv's python, the binaries the suite needs) that record what they were asked, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # starts the daemon, a stand-in target or another binary as a process

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "test"
BASH = shutil.which("bash") or "/bin/bash"
RECORD = '#!{bash}\necho "{name} $*" >> "$CALLS"\n'
# python3 stand-in: answers the venv-module probe, makes a .venv whose python records its calls.
PYTHON3 = """#!{bash}
echo "python3 $*" >> "$CALLS"
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"
  printf '#!{bash}\\necho "venv-python $*" >> "$CALLS"\\n' > "$3/bin/python"
  chmod +x "$3/bin/python"
fi
"""
REQUIRED = ("promtool", "prometheus-alertmanager", "amtool", "systemd-analyze", "chromium", "faketime", "initdb",
            "pg_ctl")
OPTIONAL = ("podman", "mmdebstrap")
PIP = "venv-python -m pip install -q --disable-pip-version-check -e .[test]"

pytestmark = [pytest.mark.skipif(os.name != "posix", reason="a bash script"), pytest.mark.process]


class Sandbox:
    """A copy of scripts/test, a PATH holding only stand-ins, and the file where the stand-ins record their calls."""

    def __init__(self, tmp_path: Path) -> None:
        self.repo, self.bin, self.calls = tmp_path / "repo", tmp_path / "bin", tmp_path / "calls"
        (self.repo / "scripts").mkdir(parents=True)
        shutil.copy2(SCRIPT, self.repo / "scripts" / "test")
        self.pg_root = tmp_path / "no-postgresql"  # Debian's /usr/lib/postgresql, empty here
        self.pg_root.mkdir()
        self.bin.mkdir()
        (self.bin / "python3").write_text(PYTHON3.format(bash=BASH), encoding="utf-8")
        (self.bin / "python3").chmod(0o755)
        for real in ("dirname", "id", "mkdir", "chmod"):
            found = shutil.which(real)
            assert found is not None, real
            (self.bin / real).symlink_to(found)

    def add(self, *names: str) -> None:
        """Stand-ins that only record their arguments."""
        for name in names:
            (self.bin / name).write_text(RECORD.format(bash=BASH, name=name), encoding="utf-8")
            (self.bin / name).chmod(0o755)

    def remove(self, *names: str) -> None:
        for name in names:
            (self.bin / name).unlink()

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """scripts/test ARGS in the copy, with only the stand-ins on PATH; the calls file starts empty."""
        self.calls.unlink(missing_ok=True)
        environ = {"PATH": str(self.bin), "CALLS": str(self.calls), "HOME": str(self.repo),
                   "PG_ROOT": str(self.pg_root), **env}
        return subprocess.run([BASH, str(self.repo / "scripts" / "test"), *args], capture_output=True, text=True,
                              timeout=30, env=environ, cwd=self.repo, check=False)

    def asked(self) -> list[str]:
        """What the stand-ins were asked, without the probes of python3 for its venv module."""
        if not self.calls.exists():
            return []
        lines = self.calls.read_text(encoding="utf-8").splitlines()
        return [line for line in lines if not line.startswith(("sudo ", "python3 -c"))]


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    """A sandbox where everything but chromium is installed, and apt-get and sudo exist."""
    sandbox = Sandbox(tmp_path)
    sandbox.add(*REQUIRED, *OPTIONAL, "apt-get", "sudo")
    sandbox.remove("chromium")
    return sandbox


def test_without_install_it_stops_in_one_line_with_the_command_and_installs_nothing(box: Sandbox) -> None:
    """chromium missing, no --install: exit 1, one line naming the command, its package and the exact apt-get
    line; no apt-get, no .venv, no pip, no pytest."""
    result = box.run("-k", "smoke")
    assert (1, "") == (result.returncode, result.stdout)
    assert ["scripts/test: missing chromium (chromium); install: sudo apt-get install -y --no-install-recommends "
            "chromium (or run scripts/test --install)"] == result.stderr.splitlines()
    assert [] == box.asked()
    assert not (box.repo / ".venv").exists()


def test_install_installs_what_is_missing_then_a_rerun_skips_what_is_done(box: Sandbox) -> None:
    """--install, chromium and podman missing and no .venv: four lines (Debian packages, .venv, install, tests),
    apt-get and pip called quietly, pytest given the other arguments. Second run, everything there: two lines,
    no apt-get, no new .venv, pip run again (it is cheap when nothing changed)."""
    box.remove("podman")
    first = box.run("--install", "-k", "smoke")
    assert (0, "") == (first.returncode, first.stdout), first.stderr
    assert ["scripts/test: installing Debian packages: chromium podman",
            "scripts/test: creating .venv",
            "scripts/test: installing pam-monitor and test tools into .venv",
            "scripts/test: running the tests"] == first.stderr.splitlines()
    assert ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends chromium podman",
            "python3 -m venv .venv", PIP, "venv-python -m pytest -k smoke"] == box.asked()

    box.add("chromium", "podman")
    again = box.run("--install", "-k", "smoke")
    assert (0, "", ["scripts/test: installing pam-monitor and test tools into .venv",
                    "scripts/test: running the tests"]) == (again.returncode, again.stdout, again.stderr.splitlines())
    assert [PIP, "venv-python -m pytest -k smoke"] == box.asked()


def test_ci_true_counts_as_install(box: Sandbox) -> None:
    """CI=true installs as --install does (the CI machine is there to be set up)."""
    result = box.run(CI="true")
    assert 0 == result.returncode, result.stderr
    assert "apt-get install -y -qq --no-install-recommends chromium" in box.asked()


def test_postgresql_is_required_only_without_a_test_dsn(box: Sandbox) -> None:
    """No initdb/pg_ctl and no PAM_MONITOR_TEST_DSN: one line naming postgresql and the DSN alternative, nothing
    run. With PAM_MONITOR_TEST_DSN set, PostgreSQL's server is not needed and nothing asks for it."""
    box.add("chromium")
    box.remove("initdb", "pg_ctl")
    stopped = box.run()
    assert 1 == stopped.returncode
    assert ["scripts/test: missing PostgreSQL's initdb and pg_ctl, or PAM_MONITOR_TEST_DSN (postgresql); install: "
            "sudo apt-get install -y --no-install-recommends postgresql (or run scripts/test --install)"] == (
        stopped.stderr.splitlines())
    assert [] == box.asked()
    with_dsn = box.run(PAM_MONITOR_TEST_DSN="postgresql://postgres@127.0.0.1:5432/postgres")
    assert 0 == with_dsn.returncode, with_dsn.stderr
    assert not any("apt-get" in line for line in box.asked())


def test_debians_versioned_server_directory_counts_as_installed(box: Sandbox) -> None:
    """initdb and pg_ctl off PATH but under <PG_ROOT>/<version>/bin, as Debian installs them: nothing missing."""
    box.add("chromium")
    box.remove("initdb", "pg_ctl")
    (box.pg_root / "15" / "bin").mkdir(parents=True)
    (box.pg_root / "15" / "bin" / "pg_ctl").touch()
    assert 0 == box.run().returncode


def test_off_debian_it_says_to_install_by_hand(box: Sandbox) -> None:
    """No apt-get: one line listing what to install by hand, with or without --install; nothing run."""
    box.remove("apt-get", "faketime")
    plain = box.run()
    assert (1, ["scripts/test: missing chromium (chromium) faketime (faketime); no apt-get here (not Debian?): "
                "install these by hand"]) == (plain.returncode, plain.stderr.splitlines())
    forced = box.run("--install")
    assert 1 == forced.returncode
    assert ["scripts/test: no apt-get here (not Debian?): install by hand: chromium (chromium) faketime (faketime) "]\
        == forced.stderr.splitlines()
    assert [] == box.asked()


def test_missing_image_tools_are_one_line_and_do_not_stop_the_suite(box: Sandbox) -> None:
    """podman and mmdebstrap missing (and nothing required): one line saying the image test will be skipped and
    that --install adds them, then the suite runs."""
    box.add("chromium")
    box.remove(*OPTIONAL)
    result = box.run()
    assert 0 == result.returncode, result.stderr
    assert ("scripts/test: no podman mmdebstrap: the container image test will be skipped (scripts/test --install "
            "adds them)") == result.stderr.splitlines()[0]
    assert "venv-python -m pytest" == box.asked()[-1].rstrip()


def test_quick_runs_only_the_tests_that_start_no_process_and_needs_no_binaries(box: Sandbox) -> None:
    """--quick passes -m "not process" -n auto (and the other arguments) to pytest and does not ask for the external
    binaries, which only the process tests start."""
    box.remove(*[n for n in REQUIRED if n != "chromium"], *OPTIONAL, "apt-get")
    result = box.run("--quick", "-x")
    assert 0 == result.returncode, result.stderr
    assert "venv-python -m pytest -m not process -n auto -x" == box.asked()[-1]
    assert "scripts/test: running the tests that start no process (--quick)" == result.stderr.splitlines()[-1]


def test_the_process_marker_is_registered() -> None:
    """`--quick` selects on a marker pytest knows (--strict-markers would reject an unknown one)."""
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"][
        "markers"]
    assert [True] == [m.startswith("process: starts a subprocess or external binary") for m in markers
                      if m.startswith("process:")]


@pytest.mark.parametrize(("status", "last_line", "exit_code"), [
    (0, "== ci: ok", 0),
    (1, "== ci: FAILED: tests (exit 1)", 1),
    (5, "== ci: FAILED: pytest collected no tests (exit 5)", 1),
])
def test_ci_runs_the_suite_with_install_and_fails_loudly(tmp_path: Path, status: int, last_line: str,
                                                         exit_code: int) -> None:
    """A copy of .ci/run with a stand-in scripts/test that exits `status`: it is called with --install; a pass goes
    on to ruff and mypy, a failure or an empty run (pytest's exit 5) ends with an `== ci: FAILED` line and a
    non-zero exit, not silently."""
    box = Sandbox(tmp_path)
    (box.repo / ".ci").mkdir()
    shutil.copy2(ROOT / ".ci" / "run", box.repo / ".ci" / "run")
    stub = f'#!{BASH}\necho "scripts/test $*" >> "$CALLS"\nexit {status}\n'
    (box.repo / "scripts" / "test").write_text(stub, encoding="utf-8")
    (box.repo / ".venv" / "bin").mkdir(parents=True)
    for tool in ("ruff", "mypy"):
        (box.repo / ".venv" / "bin" / tool).write_text(RECORD.format(bash=BASH, name=tool), encoding="utf-8")
        (box.repo / ".venv" / "bin" / tool).chmod(0o755)
    box.add("date", "uname")  # pg_isready is absent: the suite would start its own cluster
    result = subprocess.run([BASH, str(box.repo / ".ci" / "run")], capture_output=True, text=True, timeout=30,
                            env={"PATH": str(box.bin), "CALLS": str(box.calls)}, cwd=box.repo, check=False)
    assert (exit_code, last_line) == (result.returncode, result.stdout.splitlines()[-1]), result.stderr
    asked = [line for line in box.asked() if not line.startswith(("date ", "uname ", "python3 "))]
    assert "scripts/test --install" == asked[0]
    assert (status == 0) == any(line.startswith("mypy") for line in asked)
