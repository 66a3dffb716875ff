"""deploy/README.md: a newcomer finds every deploy file explained."""

from __future__ import annotations

from tests.deploy.helpers import DEPLOY


def test_deploy_readme_explains_every_file() -> None:
    """deploy/README.md names every file in deploy/ (and the root .dockerignore)."""
    readme = (DEPLOY / "README.md").read_text()
    files = [p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file() and p.name != "README.md"]
    assert [] == [f for f in files if f not in readme]
    assert ".dockerignore" in readme
