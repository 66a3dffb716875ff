"""`pam-monitor init`: the starter it writes is the shipped example, validates as written once its variables are
set, holds every secret as an environment reference, and is never written over an existing file without --force;
with --openapi its targets and checks come from the document (a real local backend serving it) and the rest of the
starter stays. The packaged examples and schema are the repository's, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.core.config import AuthContractCheck, load_config
from monitor.core.secrets import collect_secrets
from monitor.demo.app import create_demo_app
from monitor.init import example_text, variables
from tests.support.servers import free_port, serve_asgi

ROOT = Path(__file__).resolve().parents[2]
STARTER_ENV = {"DATABASE_URL": "postgresql://monitor:Pw-From-Env-1@127.0.0.1:5432/app",
               "PAGERDUTY_ROUTING_KEY": "RoutingKeyFromEnv00000000000000002"}


@pytest.fixture(autouse=True)
def _no_variables_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """init says which variables are unset now: start from none of them set."""
    for name in (*STARTER_ENV, "BACKEND_URL"):
        monkeypatch.delenv(name, raising=False)


def test_init_writes_the_starter_that_validates_and_lists_its_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pam-monitor init` in an empty directory writes pam-monitor.yaml (the packaged example, with its comments),
    exits 0, prints the two variables it reads as unset and the validate/check line; the file loads with them
    set."""
    monkeypatch.chdir(tmp_path)
    assert 0 == main(["init"])
    written = (tmp_path / "pam-monitor.yaml").read_text(encoding="utf-8")
    assert example_text() == written
    assert written.startswith("# pam-monitor starter config")
    assert ["wrote pam-monitor.yaml",
            "it reads these environment variables (secrets stay out of the file); set them first:",
            "  DATABASE_URL   (unset now)",
            "  PAGERDUTY_ROUTING_KEY   (unset now)",
            "then: pam-monitor validate --config pam-monitor.yaml && pam-monitor check --config pam-monitor.yaml",
            ] == capsys.readouterr().out.splitlines()
    config = load_config(tmp_path / "pam-monitor.yaml", environ=STARTER_ENV, require_checks=True)
    assert 5 == len(config.checks)


def test_every_secret_of_the_starter_comes_from_the_environment(tmp_path: Path) -> None:
    """Loaded with its variables set, every secret the config holds (a DSN password, a routing key) is one of the
    environment's values: the file itself holds none. A variable left out is an error, not an empty secret."""
    path = tmp_path / "starter.yaml"
    path.write_text(example_text(), encoding="utf-8")
    secrets = collect_secrets(load_config(path, environ=STARTER_ENV))
    assert secrets
    assert [] == [s for s in secrets if not any(s in value for value in STARTER_ENV.values())]
    assert ["DATABASE_URL", "PAGERDUTY_ROUTING_KEY"] == variables(example_text())


def test_init_never_overwrites_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing file: exit 1, one line naming it and --force, the file untouched. --force writes the starter."""
    path = tmp_path / "mine.yaml"
    path.write_text("# my own config\n", encoding="utf-8")
    assert 1 == main(["init", str(path)])
    assert [f"pam-monitor init: {path} exists; pass --force to overwrite it, or name another file"] == (
        capsys.readouterr().err.splitlines())
    assert "# my own config\n" == path.read_text(encoding="utf-8")
    assert 0 == main(["init", "--force", str(path)])
    assert example_text() == path.read_text(encoding="utf-8")


def test_init_openapi_takes_targets_and_checks_from_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--openapi against the demo backend (a real server on 127.0.0.1 serving /openapi.json): the file keeps the
    starter's settings and sinks, its checks are the auth_contract checks discover finds (forged tokens for the
    user in the path), the target is the backend it was found on, and it validates with the starter's variables."""
    path = tmp_path / "api.yaml"
    with serve_asgi(create_demo_app(jwt_secret="s" * 32)) as base:
        assert 0 == main(["init", "--openapi", base, str(path)])
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# pam-monitor starter config")
    assert f"# Targets and checks below come from the OpenAPI document at {base}/openapi.json" in text
    config = load_config(path, environ=STARTER_ENV)
    assert {"backend": base} == {name: str(t.base_url).rstrip("/") for name, t in config.targets.items()}
    assert config.checks
    assert all(isinstance(c, AuthContractCheck) for c in config.checks)
    assert any(c.forged_claims for c in config.checks if isinstance(c, AuthContractCheck))
    assert (["alertmanager", "pagerduty"], "pam-backend") == ([s.kind for s in config.alerts.sinks], config.service)
    assert ["PAGERDUTY_ROUTING_KEY"] == variables(text)
    assert "  PAGERDUTY_ROUTING_KEY   (unset now)" in capsys.readouterr().out.splitlines()


def test_init_openapi_that_cannot_be_read_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--openapi pointing at a closed port: exit 2, one line, no file."""
    path = tmp_path / "api.yaml"
    assert 2 == main(["init", "--openapi", f"http://127.0.0.1:{free_port()}", str(path)])
    lines = capsys.readouterr().err.splitlines()
    assert 1 == len(lines)
    assert lines[0].startswith("pam-monitor init: ")
    assert not path.exists()


def test_variables_skips_comments_and_defaults() -> None:
    """Only ${NAME} outside comments counts: a commented-out variable, a ${NAME:-default} and a ${file:...}
    need nothing set."""
    text = ('a: "${ONE}"  # ${NOT_THIS}\n# b: "${COMMENTED}"\nc: "${TWO:-x}"\nd: "${file:/run/k}"\n'
            'e: "${ONE}${THREE}"\n')
    assert ["ONE", "THREE"] == variables(text)


@pytest.mark.parametrize(("repository", "packaged"), [
    ("examples/pam-monitor.yaml", "monitor/examples/pam-monitor.yaml"),
    ("examples/journeys.yaml", "monitor/examples/journeys.yaml"),
    ("docs/webhook-payload.schema.json", "monitor/schemas/webhook-payload.schema.json"),
])
def test_packaged_files_equal_the_repositorys(repository: str, packaged: str) -> None:
    """What the wheel ships (package data) is what the repository documents and tests, byte for byte."""
    assert (ROOT / repository).read_bytes() == (ROOT / packaged).read_bytes()
    if packaged.endswith(".json"):
        assert "object" == json.loads((ROOT / packaged).read_text(encoding="utf-8"))["type"]
