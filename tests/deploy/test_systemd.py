"""deploy/systemd: systemd itself accepts the unit and rates it hardened, and the unit agrees with the daemon:
reload is SIGHUP, a bad config is not restarted, the stop timeout outlasts the drain, state lands in
StateDirectory."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from monitor.core.config import Config
from tests.deploy.helpers import DEPLOY, EXAMPLE, installed_binary, load_as_deployed, run, tool

UNIT = DEPLOY / "systemd" / "pam-monitor.service"
BAD_CONFIG_EXIT = 2  # `pam-monitor` exits 2 on a bad config
SYSTEM_STATE_ROOT = "/var/lib"  # what %S expands to in a system unit


def unit_directives(unit: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (systemd allows a key more than once, configparser alone does not)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False,
                                       dict_type=dict)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        sections[current].setdefault(key.strip(), []).append(value.strip())
    parser.read_string(unit.read_text())  # and it must parse as an INI file too
    assert set(sections) == set(parser.sections())
    return sections


def service(unit: Path = UNIT) -> dict[str, str]:
    """The [Service] section, last value of each key."""
    return {k: v[-1] for k, v in unit_directives(unit)["Service"].items()}


def test_unit_runs_the_daemon_unprivileged_reloads_with_sighup_and_never_restarts_a_bad_config() -> None:
    """ExecStart is `pam-monitor run --config`; reload sends SIGHUP (what the daemon re-reads on); the service runs
    as a dynamic or named non-root user; it restarts on failure except on the bad-config exit code."""
    unit = service()
    argv = shlex.split(unit["ExecStart"])
    assert ("pam-monitor", "run") == (Path(argv[0]).name, argv[1])
    assert "--config" in argv
    assert "HUP" in shlex.split(unit["ExecReload"].replace("$MAINPID", "1"))[1]
    assert unit.get("DynamicUser") == "yes" or unit.get("User") not in (None, "root", "0")
    assert "on-failure" == unit["Restart"]
    assert str(BAD_CONFIG_EXIT) in unit["RestartPreventExitStatus"].split()


def test_stop_timeout_outlasts_the_daemons_default_drain() -> None:
    """systemd waits longer than the default shutdown_timeout before SIGKILL, so a drain is never cut short."""
    stop_s = float(service()["TimeoutStopSec"].removesuffix("s"))
    default_drain_s = Config.model_fields["shutdown_timeout"].default
    assert stop_s > default_drain_s


def test_state_lands_in_the_units_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example config loaded with the unit's Environment= keeps its state in StateDirectory (/var/lib/<dir>),
    whatever state_dir the file says."""
    unit = service()
    env = dict(item.split("=", 1) for item in shlex.split(unit["Environment"]))
    env = {k: v.replace("%S", SYSTEM_STATE_ROOT) for k, v in env.items()}
    env |= {"DATABASE_URL": "postgresql://u@db:5432/x", "PAGERDUTY_ROUTING_KEY": "k" * 32}
    config = load_as_deployed(EXAMPLE, "127.0.0.1:9108", env, monkeypatch)
    assert Path(SYSTEM_STATE_ROOT) / unit["StateDirectory"] == config.state_dir


def _unit_with_real_binary(tmp_path: Path) -> Path:
    # verify insists that ExecStart's binary exists; point it at the entry point installed next to this Python.
    copy = tmp_path / "pam-monitor.service"
    copy.write_text(UNIT.read_text().replace(shlex.split(service()["ExecStart"])[0], installed_binary()))
    return copy


@pytest.mark.process
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify finds no unknown key, bad value or missing binary in the unit."""
    result = run([tool("systemd-analyze"), "verify", str(_unit_with_real_binary(tmp_path))], cwd=tmp_path)
    assert (0, "") == (result.returncode, result.stderr.strip())


@pytest.mark.process
def test_systemd_unit_exposure_is_rated_ok(tmp_path: Path) -> None:
    """systemd-analyze security rates the unit's exposure at most 2.0 ("OK") out of 10."""
    result = run(
        [tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20", str(_unit_with_real_binary(tmp_path))],
        cwd=tmp_path,
    )
    assert 0 == result.returncode, result.stdout[-2000:] + result.stderr
