"""Tests for probes.REGISTRY: one Kind record per config kind, consistent with the config models and itself."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import pytest

import probes
from alerts.judge.rules import ALERTNAMES
from monitor.core.config import CHECK_KINDS, Check, DbCheck, HttpCheck
from monitor.core.results import Outcome
from probes.kind import Kind


def test_registry_and_config_union_name_the_same_kinds() -> None:
    """Every kind of the config's check union has a record and every record a kind; each record is filed under
    its own name and names the union's model for that kind."""
    union = typing.get_args(typing.get_args(Check)[0])
    models = {typing.get_args(m.model_fields["kind"].annotation)[0]: m for m in union}
    assert set(CHECK_KINDS) == set(models) == set(probes.REGISTRY)
    for name, kind in probes.REGISTRY.items():
        assert (name, models[name]) == (kind.name, kind.model)


def test_each_kind_declares_ok_and_internal_error() -> None:
    """Every kind can succeed and can record a prober bug; declared outcomes have no duplicates."""
    for kind in probes.REGISTRY.values():
        assert {Outcome.OK, Outcome.INTERNAL_ERROR} <= set(kind.outcomes), kind.name
        assert len(kind.outcomes) == len(set(kind.outcomes)), kind.name


def test_rules_by_kind_come_from_the_records() -> None:
    """RULES_BY_KIND is each record's alerts, every name a known alert, without duplicates."""
    assert {name: kind.alerts for name, kind in probes.REGISTRY.items()} == dict(probes.RULES_BY_KIND)
    for name, rules in probes.RULES_BY_KIND.items():
        assert set(rules) <= set(ALERTNAMES), name
        assert len(rules) == len(set(rules)), name


def test_phases_and_tables_follow_the_check() -> None:
    """A record names the phases and tables of a given check: db's canary phase only with canary, its tables
    include those named only in required_columns; a kind without them reports none."""
    timing = {"interval": 10, "timeout": 1, "failure_threshold": 2, "success_threshold": 2}
    db = DbCheck.model_validate({"name": "d", "kind": "db", "target": "t", **timing, "canary": True,
                                 "required_tables": ["a"], "required_columns": {"b": ["x"]}})
    record = probes.REGISTRY["db"]
    assert (("connect", "query", "canary"), ("a", "b")) == (record.phases(db), record.tables(db))
    assert ("connect", "query") == record.phases(db.model_copy(update={"canary": False}))
    http = HttpCheck.model_validate({"name": "h", "kind": "http", "target": "t", **timing})
    assert ((), ()) == (probes.REGISTRY["http"].phases(http), probes.REGISTRY["http"].tables(http))


def test_a_record_must_name_its_models_kind() -> None:
    """A record whose name differs from its model's `kind` is refused when it is made (a typo cannot ship)."""
    http = probes.REGISTRY["http"]
    with pytest.raises(ValueError, match="kind 'htp' names model HttpCheck"):
        dataclasses.replace(http, name="htp")
    assert isinstance(http, Kind)


@pytest.mark.process
def test_importing_the_probers_loads_neither_driver_nor_jwt_library() -> None:
    """Importing the daemon and every prober leaves psycopg (~12 MB of RSS) and PyJWT unloaded until a db or an
    auth_contract check runs."""
    code = ("import sys, monitor.cli, monitor.daemon, alerts.engine, probes; "
            "print(sorted({'psycopg', 'jwt'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "[]" == done.stdout.strip()
