"""scripts/test says each step on stderr, one line each, and is safe to re-run: run on a copy of itself with stand-in
commands (apt-get, python3, the .venv's python) that record what they were asked, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # starts the daemon, a stand-in target or another binary as a process

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "test"
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
PRESENT = ("promtool", "prometheus-alertmanager", "amtool", "systemd-analyze", "faketime", "initdb")


def stand_ins(bin_dir: Path, *names: str) -> None:
    """Commands that only record their arguments, plus the real dirname, id, mkdir and chmod that the script and the
    stand-ins use."""
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        (bin_dir / name).write_text(RECORD.format(bash=BASH, name=name), encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "python3").write_text(PYTHON3.format(bash=BASH), encoding="utf-8")
    (bin_dir / "python3").chmod(0o755)
    for real in ("dirname", "id", "mkdir", "chmod"):
        found = shutil.which(real)
        assert found is not None, real
        link = bin_dir / real
        if not link.exists():
            link.symlink_to(found)


def run(repo: Path, bin_dir: Path, calls: Path) -> subprocess.CompletedProcess[str]:
    """scripts/test -k smoke in the copy, with only the stand-ins on PATH."""
    env = {"PATH": str(bin_dir), "CALLS": str(calls), "HOME": str(repo)}
    return subprocess.run([BASH, str(repo / "scripts" / "test"), "-k", "smoke"], capture_output=True, text=True,
                          timeout=30, env=env, cwd=repo)


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_each_step_is_one_line_on_stderr_and_a_rerun_skips_what_is_done(tmp_path: Path) -> None:
    """First run, chromium missing and no .venv: four lines (Debian packages, .venv, install, tests), apt-get and pip
    called quietly, pytest given the arguments. Second run, everything there: two lines, no apt-get, no new
    .venv, pip run again (it is cheap when nothing changed)."""
    repo, bin_dir, calls = tmp_path / "repo", tmp_path / "bin", tmp_path / "calls"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, repo / "scripts" / "test")
    stand_ins(bin_dir, *PRESENT, "apt-get", "sudo")

    first = run(repo, bin_dir, calls)
    assert (0, "") == (first.returncode, first.stdout), first.stderr
    assert ["scripts/test: installing Debian packages: chromium",
            "scripts/test: creating .venv",
            "scripts/test: installing pam-monitor and test tools into .venv",
            "scripts/test: running the tests"] == first.stderr.splitlines()
    made = calls.read_text(encoding="utf-8").splitlines()
    asked = [line for line in made if not line.startswith(("sudo ", "python3 -c"))]
    assert ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends chromium",
            "python3 -m venv .venv",
            "venv-python -m pip install -q --disable-pip-version-check -e .[test]",
            "venv-python -m pytest -k smoke"] == asked

    calls.unlink()
    stand_ins(bin_dir, "chromium")
    again = run(repo, bin_dir, calls)
    assert (0, "", ["scripts/test: installing pam-monitor and test tools into .venv",
                    "scripts/test: running the tests"]) == (again.returncode, again.stdout, again.stderr.splitlines())
    assert ["venv-python -m pip install -q --disable-pip-version-check -e .[test]",
            "venv-python -m pytest -k smoke"] == [
        line for line in calls.read_text(encoding="utf-8").splitlines() if not line.startswith("python3 -c")]
