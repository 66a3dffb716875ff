"""Fixtures for the config tests: write a YAML body to a file, and load one expecting it to be refused."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.core.config import load_config
from monitor.core.errors import ConfigError


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """A function writing a (dedented) YAML body to tmp_path/config.yaml and returning the path."""

    def write(body: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(textwrap.dedent(body))
        return path

    return write


@pytest.fixture
def config_problems() -> Callable[..., list[str]]:
    """A function loading a file that must be refused and returning ConfigError's problem lines."""

    def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
        with pytest.raises(ConfigError) as info:
            load_config(path, environ=environ or {})
        return info.value.problems

    return problems
