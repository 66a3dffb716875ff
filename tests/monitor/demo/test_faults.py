"""The faults table: one record per fault switch, rendered the same way for the banner and the README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from alerts.judge.readme_tables import extract
from alerts.judge.rules import RULES
from monitor.demo.faults import (
    BY_NAME,
    FAULT_NAMES,
    FAULTS,
    Fault,
    Fired,
    consequences,
    describe_alerts,
    fired_for,
    markdown_table,
)


def test_names_are_unique_and_include_the_original_faults() -> None:
    """Every fault name appears once; the README's first faults and garbage/short_audio are all in the table."""
    assert len(FAULT_NAMES) == len(set(FAULT_NAMES)) == len(BY_NAME)
    old = ["settings_500", "settings_open", "drop_table", "voice_down", "hang", "garbage", "short_audio"]
    assert old == [name for name in FAULT_NAMES if name in old]


def test_describe_alerts_groups_by_alertname_with_where_it_fires() -> None:
    """Alerts group by alertname in first-seen order, each with its severity and its checks (step, table)."""
    fired = [Fired("TableMissing", "j", step="read", table="t"), Fired("ContractRegression", "a"),
             Fired("TableMissing", "db", table="t")]
    assert ("TableMissing (critical) on j[read, t], db[t]; ContractRegression on a", "no alert") == (
        describe_alerts(fired, {"TableMissing": "critical"}), describe_alerts([]))


def test_fired_for_keeps_only_configured_checks() -> None:
    """Without the db checks, drop_table's alerts are the journey's only."""
    assert (Fired("TableMissing", "settings_journey", "read", "user_settings"),
            Fired("ContractRegression", "settings_journey", "read")) == fired_for(
        BY_NAME["drop_table"], {"settings_journey", "settings_get_unauth"})


def test_consequences_name_failing_checks_when_nothing_pages() -> None:
    """A fault names its alerts (every failure pages: lost_write is a CheckFailed at its step); one whose checks are
    not configured stays ok; one that would fail without a page says which checks fail unseen."""
    journey_only = {"settings_journey"}
    unseen = Fault("unseen", "a made-up fault whose failure no alert covers", fires=(),
                   fails={"settings_journey": "invalid_response"})
    assert ("CheckFailed on settings_journey[read_back]",
            "no alert; every check stays ok",
            "AuthBypass on settings_isolation",
            "no alert; failing without a page: settings_journey (invalid_response)") == (
        consequences(BY_NAME["lost_write"], journey_only), consequences(BY_NAME["garbage"], journey_only),
        consequences(BY_NAME["tenant_leak"], {"settings_isolation"}), consequences(unseen, journey_only))


def test_every_alert_of_a_fault_is_on_a_failing_check() -> None:
    """The table is consistent: an alert fires only on a check the fault makes fail."""
    for fault in FAULTS:
        assert set() == {f.check for f in fault.fires} - set(fault.fails), fault.name


def test_markdown_table_has_one_row_per_fault_in_order() -> None:
    """The README table has a header and one row per fault, in table order, naming its alerts or `no alert`."""
    rows = markdown_table().splitlines()
    assert ["| fault | what the demo does | alerts that fire |", "|---|---|---|"] == rows[:2]
    assert list(FAULT_NAMES) == [name for row in rows[2:] for name in re.findall(r"^\| `(\w+)` \|", row)]
    for fault, row in zip(FAULTS, rows[2:], strict=True):
        assert True is all(f.alertname in row for f in fault.fires)
        assert True is (bool(fault.fires) or "no alert" in row)
        assert 2 == row.count(" | ")


@pytest.mark.process
def test_module_prints_the_table_with_severities() -> None:
    """`python -m monitor.demo.faults` prints the table with the built-in rules' severities."""
    done = subprocess.run([sys.executable, "-m", "monitor.demo.faults"], capture_output=True, text=True, timeout=60,
                          check=True)
    assert "AuthBypass (critical)" in done.stdout
    assert len(FAULTS) + 2 == len(done.stdout.splitlines())


def test_readme_holds_the_faults_table() -> None:
    """README.md's demo-faults block is exactly what markdown_table() renders with the built-in severities."""
    readme = Path(__file__).resolve().parents[3] / "README.md"
    expected = markdown_table({name: rule.severity for name, rule in RULES.items()})
    assert expected == extract(readme.read_text(encoding="utf-8"), "demo-faults"), (
        "README.md is stale: run `.venv/bin/python -m tests.alerts.test_outcome_table`")
