"""Tests for probes.REGISTRY: the registry, the config union and the declared outcomes agree."""

from __future__ import annotations

import typing

import probes
from monitor.core.config import CHECK_KINDS, Check
from monitor.core.results import Outcome


def test_registry_and_config_union_name_the_same_kinds() -> None:
    """Every config kind has a prober and every prober a config kind."""
    union = typing.get_args(typing.get_args(Check)[0])
    kinds = {typing.get_args(m.model_fields["kind"].annotation)[0] for m in union}
    assert set(CHECK_KINDS) == kinds == set(probes.REGISTRY) == set(probes.OUTCOMES)


def test_each_kind_declares_ok_and_internal_error() -> None:
    """Every kind can succeed and can record a prober bug; declared outcomes have no duplicates."""
    for kind, outcomes in probes.OUTCOMES.items():
        assert {Outcome.OK, Outcome.INTERNAL_ERROR} <= set(outcomes), kind
        assert len(outcomes) == len(set(outcomes)), kind


def test_daemon_without_db_checks_does_not_load_the_postgres_driver() -> None:
    """Importing the daemon and every prober leaves psycopg unloaded (~12 MB of RSS) until a db check runs."""
    import subprocess
    import sys

    code = "import sys, monitor.cli, monitor.daemon, alerts.engine, probes; print('psycopg' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "False" == done.stdout.strip()
