"""Fixtures shared by the tests of monitor.core: the shipped example file and the variables it needs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def example_path() -> Path:
    """examples/pam-monitor.yaml: the shipped example, copied verbatim."""
    return ROOT / "examples" / "pam-monitor.yaml"


@pytest.fixture
def example_env() -> dict[str, str]:
    """Values for the two ${VAR}s the example reads (DATABASE_URL carries a password to find and redact)."""
    return {"DATABASE_URL": "postgresql://app:s3cr3t-pw@127.0.0.1:5432/app", "PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY"}
