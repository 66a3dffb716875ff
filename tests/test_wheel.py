"""A pip-installed pam-monitor works on its own: the wheel built from the sources alone ships the starter configs and
the webhook schema, and installed in a fresh virtualenv outside the repository (a temporary directory) its
`init`, `validate`, `check` (against a real local backend) and the demo work from there, with nothing of the
repository on the path.

The wheel's dependencies come from a wheelhouse kept in ~/.cache/pam-monitor/wheels, filled once from the
package index (pip's own cache makes that cheap) and used with --no-index afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from monitor.demo.pgtemp import find_pg_bin
from tests.support.poll import until
from tests.support.postgres import INSTALL_HINT
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path.home() / ".cache" / "pam-monitor" / "wheels"
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "monitor", "probes", "alerts")
SHIPPED = ("monitor/examples/pam-monitor.yaml", "monitor/examples/journeys.yaml",
           "monitor/schemas/webhook-payload.schema.json", "monitor/py.typed")
STARTER_ENV = {"DATABASE_URL": "postgresql://monitor:pw@127.0.0.1:5432/app", "PAGERDUTY_ROUTING_KEY": "k" * 32}

pytestmark = [pytest.mark.process, pytest.mark.slow]


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run to completion (bounded), output captured; the caller asserts on the exit code."""
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a user outside the repository: no PAM_MONITOR_* or PYTHONPATH, no virtualenv active."""
    drop = ("PAM_MONITOR_", "PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL", "PAGERDUTY_ROUTING_KEY")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | {"PYTHONDONTWRITEBYTECODE": "1",
                                                                           "HOME": str(home)}


def build_wheel(tmp_path: Path) -> Path:
    """`pip wheel --no-deps` of a copy of exactly what the wheel is built from (no examples/, docs/, tests/)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], tmp_path,
                dict(os.environ))
    assert 0 == built.returncode, built.stderr
    (wheel,) = dist.glob("pam_monitor-*.whl")
    return wheel


def install(wheel: Path, venv: Path, env: dict[str, str]) -> None:
    """Install the wheel into `venv` with --no-index: the wheel from its directory, the dependencies from the
    wheelhouse (downloaded into it first when something is missing)."""
    python = str(venv / "bin" / "python")
    argv = [python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheel.parent),
            "--find-links", str(WHEELHOUSE), "pam-monitor"]
    done = run(argv, venv.parent, env)
    if done.returncode != 0:
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        fetched = run([python, "-m", "pip", "download", "-q", "-d", str(WHEELHOUSE), str(wheel)], venv.parent, env)
        assert 0 == fetched.returncode, fetched.stderr
        for stale in WHEELHOUSE.glob("pam_monitor-*.whl"):  # only dependencies live there
            stale.unlink()
        done = run(argv, venv.parent, env)
    assert 0 == done.returncode, done.stderr


def test_wheel_ships_the_starter_configs_and_the_schema_and_no_repository_files(tmp_path: Path) -> None:
    """The wheel holds the packages with their data (examples, schema, py.typed) and no tests, bench or deploy
    tree; its three top-level packages are the generic names the README warns about."""
    names = zipfile.ZipFile(build_wheel(tmp_path)).namelist()
    assert [] == [f for f in SHIPPED if f not in names]
    assert [] == [n for n in names if n.startswith(("tests/", "bench/", "deploy/", "examples/", "docs/"))]
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert {"monitor", "probes", "alerts"} == tops


def test_installed_wheel_inits_validates_checks_and_runs_the_demo_outside_the_repository(tmp_path: Path) -> None:
    """In a fresh virtualenv in a temporary directory: `pam-monitor init` writes the starter and `validate` accepts
    it with its two variables set; the demo starts (backend, throwaway PostgreSQL, daemon) and serves /healthz;
    `init --openapi` against the demo backend and `check` on that file exit 0; SIGINT stops the demo with exit 0.
    The code that ran is the venv's, not the repository's."""
    if find_pg_bin() is None:
        pytest.fail(f"the demo needs PostgreSQL's server binaries. {INSTALL_HINT}", pytrace=False)
    wheel = build_wheel(tmp_path)
    home, work, venv = tmp_path / "home", tmp_path / "work", tmp_path / "venv"
    home.mkdir()
    work.mkdir()
    env = clean_env(home) | {"PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))}
    made = run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    assert 0 == made.returncode, made.stderr
    install(wheel, venv, env)
    pam_monitor = str(venv / "bin" / "pam-monitor")

    where = run([str(venv / "bin" / "python"), "-c", "import monitor, probes, alerts; print(monitor.__file__)"],
                work, env)
    assert str(venv) in where.stdout, where.stdout + where.stderr

    init = run([pam_monitor, "init"], work, env)
    assert 0 == init.returncode, init.stderr
    assert "  DATABASE_URL   (unset now)" in init.stdout.splitlines()
    valid = run([pam_monitor, "validate", "--config", "pam-monitor.yaml"], work, env | STARTER_ENV)
    assert (0, "") == (valid.returncode, valid.stderr)
    assert valid.stdout.startswith("pam-monitor.yaml: ok: 5 checks")
    # The secrets really come from the environment: unset, validate warns (the file itself is fine) and
    # --strict, the gate on the machine that runs the daemon, refuses.
    unset = run([pam_monitor, "validate", "--config", "pam-monitor.yaml"], work, env)
    assert (0, True) == (unset.returncode, "DATABASE_URL" in unset.stderr), unset.stderr
    strict = run([pam_monitor, "validate", "--strict", "--config", "pam-monitor.yaml"], work, env)
    assert 2 == strict.returncode, strict.stderr

    target, listen = free_port(), free_port()
    said = tmp_path / "demo.stderr"  # a file, not a pipe: nothing reads it while the demo runs
    with said.open("w") as stderr:
        demo = subprocess.Popen([pam_monitor, "demo", "--target-port", str(target), "--listen",
                                 f"127.0.0.1:{listen}", "--interval", "2s"], cwd=work, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        with httpx.Client(timeout=5) as client:

            def demo_is_up() -> bool:
                if demo.poll() is not None:
                    raise AssertionError(f"the demo exited {demo.returncode}: {said.read_text()}")
                return 200 == client.get(f"http://127.0.0.1:{listen}/healthz").status_code

            # Generous: initdb of the throwaway cluster on a busy machine takes seconds to tens of seconds.
            until(demo_is_up, timeout=120, interval=0.2, what="the demo's /healthz", ignore=(httpx.TransportError,))
        generated = run([pam_monitor, "init", "--openapi", f"http://127.0.0.1:{target}", "api.yaml"], work, env)
        assert 0 == generated.returncode, generated.stderr
        checked = run([pam_monitor, "check", "--config", "api.yaml"], work, env | STARTER_ENV, timeout=120)
        assert 0 == checked.returncode, checked.stdout + checked.stderr
        assert " 0 failed" in checked.stdout
        demo.send_signal(signal.SIGINT)
        assert 0 == demo.wait(timeout=60)
        assert "throwaway PostgreSQL cluster" in said.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(timeout=10)
