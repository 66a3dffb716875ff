"""deploy/Dockerfile really builds and its image really runs: `podman build --isolation=chroot` on a Debian bookworm
base made by mmdebstrap (no registry is reachable here, Debian's mirrors are), then the image's own entrypoint,
environment, working directory and user run from its exported filesystem in a chroot: the daemon serves /healthz
and /metrics on 127.0.0.1 as uid 10001, the image's HEALTHCHECK passes, and the image holds no compiler, no pip
cache and no source tree.

Slow (about 30-40 s cold on 2 busy cores; seconds once the base and podman's layers are cached). The base is cached
in ~/.cache/pam-monitor/ and as a local podman image; the build needs the package index for `pip install .`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.deploy.helpers import ROOT
from tests.support.poll import until
from tests.support.servers import free_port, serve_asgi

CACHE = Path.home() / ".cache" / "pam-monitor"
# What the base holds: Debian's python3 (3.11 in bookworm) with its venv module; passwd (groupadd, useradd) and
# the rest come with mmdebstrap's `apt` variant.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_KEY = hashlib.sha256(" ".join(("bookworm", "apt", *BASE_PACKAGES)).encode()).hexdigest()[:12]
BASE_TAR = CACHE / f"debian-bookworm-python3-{BASE_KEY}.tar"
BASE_IMAGE = f"localhost/pam-monitor-test-base:{BASE_KEY}"
IMAGE = "localhost/pam-monitor:test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
MISSING = [tool for tool in ("podman", "mmdebstrap") if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.process,
    pytest.mark.skipif(bool(MISSING), reason=f"{' and '.join(MISSING)} not installed: apt-get install podman "
                                              "mmdebstrap (scripts/test --install does)"),
]


def run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run to completion (bounded; a cold build downloads the dependencies), output captured, exit 0 required."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert 0 == done.returncode, f"{' '.join(argv[:3])} ...: exit {done.returncode}\n{done.stderr[-3000:]}"
    return done


def as_image_root() -> list[str]:
    """The prefix that lets us own files as the image's uids and chroot: nothing as root, `podman unshare`
    (root of podman's user namespace) otherwise."""
    return [] if os.geteuid() == 0 else ["podman", "unshare"]


def base_image() -> str:
    """The Debian base as a local podman image, made by mmdebstrap once and cached (tarball and image)."""
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False, timeout=60).returncode == 0:
        return BASE_IMAGE
    if not BASE_TAR.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = BASE_TAR.with_name(f"{BASE_TAR.stem}.partial.tar")  # mmdebstrap picks the format by the suffix
        run(["mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(BASE_PACKAGES)}", "bookworm",
             str(partial)])
        partial.rename(BASE_TAR)  # only a whole tarball is ever cached
    run(["podman", "import", "--quiet", str(BASE_TAR), BASE_IMAGE])
    return BASE_IMAGE


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    """deploy/Dockerfile built (context: the repository root) on the Debian base; its config (Inspect's Config, with
    the Healthcheck that podman keeps beside it)."""
    argv = ["podman", "build", "--quiet", "--format", "docker", "--isolation=chroot", "--build-arg",
            f"BASE={base_image()}", "-f", str(ROOT / "deploy" / "Dockerfile"), "-t", IMAGE]
    if HOST_CA.exists():
        # The host's trust store for the build's pip (Debian's pip reads this file), so a proxy the host trusts is
        # trusted in the build too; mounted for the build only, never copied into a layer.
        argv += ["-v", f"{HOST_CA}:{HOST_CA}:ro"]
    run([*argv, str(ROOT)])
    inspected = json.loads(run(["podman", "image", "inspect", IMAGE]).stdout)
    config: dict[str, Any] = inspected[0]["Config"] | {"Healthcheck": inspected[0]["Healthcheck"]}
    return config


@pytest.fixture(scope="module")
def rootfs(image: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The image's filesystem, exported from a container made of it, unpacked with owners kept."""
    root = tmp_path_factory.mktemp("image") / "rootfs"
    root.mkdir()
    container = run(["podman", "create", "--no-healthcheck", IMAGE]).stdout.strip()
    try:
        tar = root.parent / "image.tar"
        run(["podman", "export", "-o", str(tar), container])
        run([*as_image_root(), "tar", "-x", "-p", "--numeric-owner", "-f", str(tar), "-C", str(root)])
        tar.unlink()
        yield root
    finally:
        run(["podman", "rm", "--force", container])
        subprocess.run([*as_image_root(), "rm", "-rf", str(root)], check=False, timeout=120)


def in_image(root: Path, image: dict[str, Any], argv: list[str], env: dict[str, str]) -> list[str]:
    """`argv` as the image would run it: chroot into its filesystem as its USER, in its WORKDIR, with exactly its
    ENV plus `env`."""
    user = image["User"]
    environ = [*image["Env"], *(f"{k}={v}" for k, v in env.items())]
    return [*as_image_root(), "chroot", f"--userspec={user}", str(root), "/usr/bin/env", "-i", "-C",
            image["WorkingDir"], *environ, *argv]


@pytest.fixture
def backend() -> Iterator[str]:
    """A real backend on 127.0.0.1 for the image's daemon to probe."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    with serve_asgi(Starlette(routes=[Route("/health", health)])) as base:
        yield base


def test_image_runs_its_entrypoint_as_its_user_and_serves_healthz_and_metrics(
    image: dict[str, Any], rootfs: Path, backend: str
) -> None:
    """The image's ENTRYPOINT and CMD (only --listen moved to a free loopback port), with a config put where CMD
    reads it (as a mounted file would be): the process runs as uid 10001, /healthz answers 200, /metrics carries
    the build info, the state database is written on the state volume, HEALTHCHECK's own command exits 0, and
    SIGTERM stops it with exit 0."""
    assert "10001:10001" == image["User"]
    argv = [*image["Entrypoint"], *image["Cmd"]]
    config_file = rootfs / argv[argv.index("--config") + 1].lstrip("/")
    config_file.write_text(yaml.safe_dump({
        "service": "image-test", "defaults": {"interval": "2s", "timeout": "1s"},
        "targets": {"backend": {"base_url": backend}},
        "checks": [{"name": "backend_health", "kind": "http", "target": "backend", "path": "/health"}],
    }))
    port = free_port()
    argv[argv.index("--listen") + 1] = f"127.0.0.1:{port}"
    daemon = subprocess.Popen(in_image(rootfs, image, argv, {}), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            def alive() -> bool:
                if daemon.poll() is not None:
                    raise AssertionError(daemon.stderr.read().decode() if daemon.stderr else "daemon exited")
                return 200 == client.get("/healthz").status_code

            until(alive, timeout=60, what="/healthz 200 from the image's daemon", ignore=(httpx.TransportError,))
            assert 'pam_monitor_build_info{version="0.1.0"} 1.0' in client.get("/metrics").text
        uids = [line for line in Path(f"/proc/{daemon.pid}/status").read_text().splitlines()
                if line.startswith("Uid:")]
        assert ["Uid:\t10001\t10001\t10001\t10001"] == uids
        state = dict(kv.split("=", 1) for kv in image["Env"])["PAM_MONITOR_STATE_DIR"]
        assert [state] == list(image["Volumes"])
        assert list((rootfs / state.lstrip("/")).glob("*.sqlite3"))
        check = image["Healthcheck"]["Test"]
        assert "CMD" == check[0]
        health = subprocess.run(in_image(rootfs, image, check[1:],
                                         {"PAM_MONITOR_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"}),
                                capture_output=True, timeout=30, check=False)
        assert 0 == health.returncode, health.stderr
        daemon.send_signal(signal.SIGTERM)
        assert 0 == daemon.wait(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=10)
        if daemon.stderr:
            daemon.stderr.close()


def test_image_holds_no_compiler_no_pip_cache_and_no_source_tree(rootfs: Path) -> None:
    """The runtime stage got only the venv: no C compiler, no pip cache directory, no /src and no copy of the
    project outside the venv's site-packages; the venv's own pam-monitor is there."""
    compilers = [p for d in ("usr/bin", "usr/local/bin") for p in (rootfs / d).glob("*")
                 if p.name in {"cc", "gcc", "c++", "g++", "clang"} or p.name.endswith(("-gcc", "-gcc-12"))]
    assert [] == compilers
    caches = [str(p.relative_to(rootfs)) for p in rootfs.rglob("*") if p.is_dir() and p.name == ".cache"]
    assert [] == caches
    assert not (rootfs / "src").exists()
    projects = [str(p.relative_to(rootfs)) for p in rootfs.rglob("pyproject.toml")
                if "site-packages" not in p.parts]
    assert [] == projects
    packages = [str(p.relative_to(rootfs)) for p in rootfs.rglob("monitor/cli.py")]
    assert 1 == len(packages), packages
    assert packages[0].startswith("opt/pam-monitor/lib/python3")
    assert "/site-packages/" in packages[0]
    assert (rootfs / "opt/pam-monitor/bin/pam-monitor").exists()
