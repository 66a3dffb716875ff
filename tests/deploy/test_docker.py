"""deploy/Dockerfile and .dockerignore: the image runs the installed entry point as non-root with a config that
loads, keeps state on its volume, answers its HEALTHCHECK from /healthz, and builds from a context without
secrets or state."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.deploy.helpers import DEPLOY, EXAMPLE, ROOT, arg_after, listen_port, load_as_deployed
from tests.support.servers import free_port, serve_asgi

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Instructions of deploy/Dockerfile as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage (from its FROM on); the global ARGs before the first FROM are not a stage."""
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def global_args() -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults (what FROM lines may use)."""
    args: dict[str, str] = {}
    for keyword, spec in dockerfile_instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = spec.partition("=")
            args[name] = default
    return args


def final_stage() -> dict[str, list[str]]:
    """The runtime stage's instructions by keyword."""
    out: dict[str, list[str]] = {}
    for keyword, args in dockerfile_stages()[-1]:
        out.setdefault(keyword, []).append(args)
    return out


def exec_form(keyword: str) -> list[str]:
    """The JSON (exec-form) argv of the runtime stage's one ENTRYPOINT or CMD."""
    (spec,) = final_stage()[keyword]
    argv: list[str] = json.loads(spec)
    return argv


def healthcheck_command() -> list[str]:
    """The exec-form HEALTHCHECK command."""
    (spec,) = final_stage()["HEALTHCHECK"]
    command: list[str] = json.loads(spec[spec.index("CMD") + 3:].strip())
    return command


def dockerfile_env() -> dict[str, str]:
    """ENV values of the runtime stage (key=value form)."""
    env: dict[str, str] = {}
    for args in final_stage()["ENV"]:
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def test_image_runs_as_a_numeric_non_root_user() -> None:
    """USER is a numeric uid other than 0, so Kubernetes' runAsNonRoot can verify it without /etc/passwd."""
    (user,) = final_stage()["USER"]
    uid = user.split(":")[0]
    assert uid.isdigit(), user
    assert int(uid) > 0


def test_base_image_python_satisfies_requires_python() -> None:
    """Every stage starts from the BASE build argument, whose default is an official python image of a version
    pyproject's requires-python accepts (tests/deploy/test_image.py builds on a Debian base instead)."""
    minimum = re.fullmatch(r">=\s*(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minimum is not None, PYPROJECT["project"]["requires-python"]
    assert "python:3.11-slim" == global_args()["BASE"]
    for stage in dockerfile_stages():
        _, spec = stage[0]
        assert spec.split()[0] == "${BASE}", spec
        image = global_args()["BASE"]
        version = re.match(r"python:(\d+)\.(\d+)", image.split()[0])
        assert version is not None, image
        assert (int(version[1]), int(version[2])) >= (int(minimum[1]), int(minimum[2])), image


def test_entrypoint_and_cmd_run_the_daemon_on_the_exposed_port_with_the_shipped_config() -> None:
    """ENTRYPOINT is pyproject's console script; CMD runs `run` with the config file the image copies in and
    listens on all interfaces at the EXPOSEd port; SIGTERM (what the daemon drains on) stops it."""
    assert list(PYPROJECT["project"]["scripts"]) == exec_form("ENTRYPOINT")
    cmd = exec_form("CMD")
    assert "run" == cmd[0]
    copied_to = {shlex.split(args)[-1] for args in final_stage()["COPY"]}
    assert arg_after(cmd, "--config") in copied_to
    listen = arg_after(cmd, "--listen")
    assert listen.startswith("0.0.0.0:")
    assert [str(listen_port(listen))] == final_stage()["EXPOSE"]
    assert ["SIGTERM"] == final_stage()["STOPSIGNAL"]


def test_dockerfile_state_volume_is_where_the_loaded_config_keeps_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example config, loaded with the image's ENV and CMD, puts state_dir on the declared VOLUME."""
    env = dockerfile_env() | {"DATABASE_URL": "postgresql://u@db:5432/x", "PAGERDUTY_ROUTING_KEY": "k" * 32}
    config = load_as_deployed(EXAMPLE, arg_after(exec_form("CMD"), "--listen"), env, monkeypatch)
    (volume,) = final_stage()["VOLUME"]
    assert [str(config.state_dir)] == json.loads(volume)


def _dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        glob = pattern.replace("**/", "*")
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, glob) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerfile_copies_what_pip_install_needs_and_dockerignore_keeps_secrets_out() -> None:
    """Every COPY source exists and survives .dockerignore; the build copies pyproject's packages and readme;
    git history, virtualenvs, local state, .env files and caches never reach the build context."""
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources: list[str] = []
    for stage in dockerfile_stages():
        for keyword, args in stage:
            if keyword == "COPY" and "--from" not in args:
                sources += shlex.split(args)[:-1]
    assert [] == [s for s in sources if not (ROOT / s).exists()]
    assert [] == [s for s in sources if _dockerignored(s, patterns)]
    packages = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"], *packages}
    assert set() == needed - set(sources)
    private = [".git/config", ".venv/bin/python", ".pam-monitor/state.db", ".env", "prod.env",
               "monitor/__pycache__/x.pyc", "tests/conftest.py"]
    assert [] == [p for p in private if not _dockerignored(p, patterns)]


@pytest.fixture
def health_server() -> Iterator[tuple[str, dict[str, int]]]:
    """A real HTTP server whose /healthz answers the status code held in the returned dict."""
    state = {"status": 200}

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok" if state["status"] == 200 else "stalled", status_code=state["status"])

    with serve_asgi(Starlette(routes=[Route("/healthz", healthz)])) as base:
        yield base, state


def _run_healthcheck(url: str) -> int:
    command = healthcheck_command()
    env = {**dockerfile_env(), "PAM_MONITOR_HEALTHCHECK_URL": url}
    env.pop("PATH", None)
    result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False)
    return result.returncode


def test_docker_healthcheck_hits_healthz_on_the_listen_port() -> None:
    """The HEALTHCHECK's default URL is the daemon's /healthz on loopback at the port CMD listens on."""
    url = urlsplit(dockerfile_env()["PAM_MONITOR_HEALTHCHECK_URL"])
    assert ("127.0.0.1", listen_port(arg_after(exec_form("CMD"), "--listen")), "/healthz") == (
        url.hostname, url.port, url.path)
    # No curl or wget in the slim image: the venv's interpreter, which every base has once the project is in it.
    assert "/opt/pam-monitor/bin/python" == healthcheck_command()[0]


@pytest.mark.process
def test_docker_healthcheck_command_reports_healthy_stalled_and_down(
    health_server: tuple[str, dict[str, int]],
) -> None:
    """The HEALTHCHECK one-liner exits 0 on 200, 1 on 503 and 1 when nothing listens (real HTTP server)."""
    base, state = health_server
    assert 0 == _run_healthcheck(f"{base}/healthz")
    state["status"] = 503
    assert 1 == _run_healthcheck(f"{base}/healthz")
    assert 1 == _run_healthcheck(f"http://127.0.0.1:{free_port()}/healthz")
