"""deploy/systemd/pam-monitor@.service: systemd accepts the template and rates it hardened like the single unit;
instance I runs shard I of SHARDS on port 9108 + I with its own state directory; the rest matches the single unit."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.core.config import shard_of
from tests.deploy.helpers import DEPLOY, EXAMPLE, installed_binary, load_as_deployed, run, tool
from tests.deploy.test_systemd import SYSTEM_STATE_ROOT, UNIT, service, unit_directives

TEMPLATE = DEPLOY / "systemd" / "pam-monitor@.service"
SHARDS = 3
# Hardening and lifecycle keys that must be the same as in the single unit (the template only adds sharding).
SAME_AS_SINGLE = ("Type", "ExecReload", "DynamicUser", "StateDirectoryMode", "UMask", "KillSignal", "TimeoutStopSec",
                  "Restart", "RestartPreventExitStatus", "NoNewPrivileges", "ProtectSystem", "PrivateUsers",
                  "RestrictAddressFamilies", "SystemCallFilter", "CapabilityBoundingSet", "MemoryMax")


def expanded(text: str, instance: int, shards: int = SHARDS) -> str:
    """A directive as systemd runs it for pam-monitor@<instance> with SHARDS=<shards> in shards.env."""
    return text.replace("%i", str(instance)).replace("%S", SYSTEM_STATE_ROOT).replace("${SHARDS}", str(shards))


def argv(instance: int, shards: int = SHARDS) -> list[str]:
    """ExecStart of an instance, split as systemd splits it."""
    return shlex.split(expanded(service(TEMPLATE)["ExecStart"], instance, shards))


def _instance_file(tmp_path: Path, instance: int = 0) -> Path:
    # verify and security need an instance name, and ExecStart's binary must exist: the one next to this Python.
    copy = tmp_path / f"pam-monitor@{instance}.service"
    copy.write_text(TEMPLATE.read_text().replace(argv(instance)[0], installed_binary()))
    return copy


@pytest.mark.process
def test_systemd_analyze_verify_accepts_an_instance(tmp_path: Path) -> None:
    """systemd-analyze verify of pam-monitor@0.service: no unknown key, bad value, bad specifier or missing binary."""
    result = run([tool("systemd-analyze"), "verify", str(_instance_file(tmp_path))], cwd=tmp_path)
    assert (0, "") == (result.returncode, result.stderr.strip())


@pytest.mark.process
def test_an_instance_is_rated_ok_like_the_single_unit(tmp_path: Path) -> None:
    """systemd-analyze security rates an instance's exposure at most 2.0 ("OK")."""
    result = run([tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20",
                  str(_instance_file(tmp_path))], cwd=tmp_path)
    assert 0 == result.returncode, result.stdout[-2000:] + result.stderr


def test_the_template_differs_from_the_single_unit_only_in_sharding() -> None:
    """Lifecycle and hardening keys equal the single unit's; shards.env is required (no leading '-')."""
    single, template = unit_directives(UNIT)["Service"], unit_directives(TEMPLATE)["Service"]
    assert {k: single[k] for k in SAME_AS_SINGLE} == {k: template[k] for k in SAME_AS_SINGLE}
    assert "/etc/pam-monitor/shards.env" in template["EnvironmentFile"]
    assert "%i" in unit_directives(TEMPLATE)["Unit"]["Description"][-1]


def test_each_instance_runs_its_shard_on_its_own_port() -> None:
    """Instance I: `run --shard I/SHARDS --listen-base-port B`; the ports B..B+N-1 are distinct."""
    bases = set()
    for instance in range(SHARDS):
        args = argv(instance)
        assert ("pam-monitor", "run") == (Path(args[0]).name, args[1])
        assert f"{instance}/{SHARDS}" == args[args.index("--shard") + 1]
        bases.add(int(args[args.index("--listen-base-port") + 1]))
    assert 1 == len(bases)


def test_each_instance_keeps_state_in_its_own_state_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example config loaded with an instance's Environment= keeps its state in /var/lib/pam-monitor/<I>, its
    StateDirectory, distinct per instance and independent of N (changing N keeps each shard's state)."""
    dirs = []
    for instance in range(SHARDS):
        unit = service(TEMPLATE)
        env = dict(item.split("=", 1) for item in shlex.split(expanded(unit["Environment"], instance)))
        env |= {"DATABASE_URL": "postgresql://u@db:5432/x", "PAGERDUTY_ROUTING_KEY": "k" * 32}
        config = load_as_deployed(EXAMPLE, "127.0.0.1:9108", env, monkeypatch)
        assert Path(SYSTEM_STATE_ROOT) / expanded(unit["StateDirectory"], instance) == config.state_dir
        assert expanded(unit["StateDirectory"], instance) == expanded(unit["StateDirectory"], instance, shards=7)
        dirs.append(config.state_dir)
    assert len(set(dirs)) == SHARDS


@pytest.mark.process
def test_the_instances_argv_validates_the_example_config_shard_by_shard(tmp_path: Path) -> None:
    """`pam-monitor validate` with each instance's --shard: exit 0, that shard's check count; together all."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PAM_MONITOR_")}
    environ |= {"DATABASE_URL": "postgresql://u@db:5432/x", "PAGERDUTY_ROUTING_KEY": "k" * 32}
    names = [c["name"] for c in yaml.safe_load(EXAMPLE.read_text())["checks"]]
    for instance in range(SHARDS):
        args = argv(instance)
        shard = args[args.index("--shard") + 1]
        done = subprocess.run([installed_binary(), "validate", "--config", str(EXAMPLE), "--shard", shard],
                              capture_output=True, text=True, timeout=60, env=environ, cwd=tmp_path, check=False)
        count = sum(1 for n in names if shard_of(n, SHARDS) == instance)
        assert (0, f"ok: {count} checks in shard {shard}") == (done.returncode,
                                                               done.stdout.split(": ", 1)[1].split(" (")[0])
