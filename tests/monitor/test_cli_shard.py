"""The CLI's shard options: --shard I/N, --shards N from the pod's ordinal, PAM_MONITOR_SHARD, --listen-base-port."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from monitor.core.config import shard_of
from tests.support.daemon import command, run_daemon
from tests.support.servers import free_port

pytestmark = pytest.mark.process  # starts the daemon, a stand-in target or another binary as a process

NAMES = [f"c{i}" for i in range(12)]
BODY = "targets: {b: {base_url: 'http://127.0.0.1:9'}}\nchecks:\n" + "".join(
    f"  - {{name: {n}, kind: http, target: b, interval: 1h}}\n" for n in NAMES)


def _validate(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(BODY)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PAM_MONITOR_") and k != "POD_NAME"}
    return subprocess.run(command("validate", "-c", str(path), *args), capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=environ | (env or {}))


def _summary(tmp_path: Path, shard: tuple[int, int]) -> str:
    count = sum(1 for n in NAMES if shard_of(n, shard[1]) == shard[0])
    where = f"{tmp_path / 'config.yaml'}: ok: {count} checks in shard {shard[0]}/{shard[1]}"
    return f"{where} (0 disabled), 1 targets, 0 sinks"


@pytest.mark.parametrize(("args", "env", "shard"), [
    (["--shard", "1/3"], {}, (1, 3)),
    (["--shard", "2-of-3"], {}, (2, 3)),
    (["--shards", "3"], {"POD_NAME": "pam-monitor-3"}, (1, 3)),
    (["--shards", "3"], {"POD_NAME": "", "HOSTNAME": "pam-monitor-5"}, (2, 3)),
    (["--shards", "2", "--replicas-per-shard", "3"], {"POD_NAME": "pam-monitor-3"}, (1, 2)),
    ([], {"PAM_MONITOR_SHARD": "0/3"}, (0, 3)),
    (["--shard", "2/4"], {"PAM_MONITOR_SHARD": "0/3"}, (2, 4)),
])
def test_each_way_of_naming_the_shard_keeps_that_shards_checks(
    tmp_path: Path, args: list[str], env: dict[str, str], shard: tuple[int, int]
) -> None:
    """validate counts exactly the checks of the shard named by the flag, the pod ordinal or the env var (the flag
    wins over the env var), and says which shard it counted."""
    done = _validate(tmp_path, *args, env=env)
    assert (0, _summary(tmp_path, shard), "") == (done.returncode, done.stdout.strip(), done.stderr)


@pytest.mark.parametrize(("args", "env", "line"), [
    (["--shards", "3"], {"POD_NAME": "pam-monitor"},
     "pam-monitor: --shards 3 takes the shard from the pod's ordinal (a name ending in -<k>, such as pam-monitor-3), "
     "but the pod name 'pam-monitor' has none; set POD_NAME from metadata.name, or pass --shard I/N"),
    (["--shards", "3"], {"POD_NAME": "pam-monitor-6"},
     "pam-monitor: pod 'pam-monitor-6' has ordinal 6, but --shards 3 with 2 replicas each has ordinals 0..5; scale "
     "the StatefulSet to 6 replicas or raise --shards to 4"),
    ([], {"PAM_MONITOR_SHARD": "3/3"},
     "pam-monitor: PAM_MONITOR_SHARD must be i/n (or i-of-n) with 0 <= i < n, such as 0/2, got '3/3'"),
])
def test_a_shard_that_cannot_be_known_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], line: str
) -> None:
    """No ordinal, an ordinal past the shards, a bad PAM_MONITOR_SHARD: exactly one line on stderr, exit 2."""
    done = _validate(tmp_path, *args, env=env)
    assert (2, [line], "") == (done.returncode, done.stderr.splitlines(), done.stdout)


def test_shard_and_shards_together_is_a_usage_error(tmp_path: Path) -> None:
    """--shard and --shards name the shard twice: argparse refuses, exit 2."""
    done = _validate(tmp_path, "--shard", "0/3", "--shards", "3")
    assert 2 == done.returncode
    assert "argument --shards: not allowed with argument --shard" in done.stderr


def test_listen_base_port_needs_a_shard(tmp_path: Path) -> None:
    """--listen-base-port without any shard: one line, exit 2, nothing started."""
    path = tmp_path / "config.yaml"
    path.write_text(BODY)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PAM_MONITOR_")}
    done = subprocess.run(command("run", "-c", str(path), "--listen-base-port", "9200"), capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=environ)
    assert (2, ["pam-monitor: --listen-base-port needs a shard: pass --shard I/N or --shards N, or set "
                "PAM_MONITOR_SHARD"]) == (done.returncode, done.stderr.splitlines())


def test_run_listens_on_the_base_port_plus_the_shard_and_runs_only_its_checks(tmp_path: Path) -> None:
    """`run --shard 2-of-3 --listen-base-port B` (what pam-monitor@2-of-3.service runs) serves on B+2 and its
    /status lists exactly shard 2's checks."""
    path = tmp_path / "config.yaml"
    path.write_text(BODY)
    base = free_port()
    port = base + 2
    with run_daemon(path, port, tmp_path, "--shard", "2-of-3", "--listen-base-port", str(base),
                    env={"PAM_MONITOR_STATE_DIR": str(tmp_path / "state")}) as daemon:
        listed = sorted(c["name"] for c in daemon.status()["checks"])
    assert sorted(n for n in NAMES if shard_of(n, 3) == 2) == listed
