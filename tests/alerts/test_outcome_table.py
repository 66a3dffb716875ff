"""The README's "which outcome raises which alert" table is what `evaluate()` does, and README.md holds it as generated.

Run `.venv/bin/python -m tests.alerts.test_outcome_table` to rewrite README.md's generated blocks after a change.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from alerts.judge.evaluate import evaluate
from alerts.judge.readme_tables import alerts_for, blocks, extract, outcome_table, splice
from alerts.judge.rules import CHECK_FAILED, FAILING, RULES, rules_for
from alerts.model import CheckMemory, Signal
from monitor.core.results import Outcome, Result
from probes import REGISTRY, RULES_BY_KIND
from tests.support.alerting import CHECKS, make_config, result

README = Path(__file__).resolve().parents[2] / "README.md"
CONFIG = make_config()
CHECK_OF_KIND = {c.kind: c for c in CONFIG.checks}
STATUS = {
    Outcome.OK: 200, Outcome.SLOW: 200, Outcome.UNEXPECTED_STATUS: 404, Outcome.SERVER_ERROR: 500,
    Outcome.AUTH_BYPASS: 200, Outcome.RATE_LIMITED: 429, Outcome.INVALID_RESPONSE: 200,
    # The seed incident: a 5xx whose body names a missing relation.
    Outcome.TABLE_MISSING: 500, Outcome.PERMISSION_DENIED: 403, Outcome.POLICY_ERROR: 500,
}
"""The HTTP status a synthetic result of each outcome carries on an HTTP kind (none on a PostgreSQL kind)."""
GOOD_BEFORE = CheckMemory(last_good_status=200, last_good_outcome="ok")
CELLS = list(itertools.product(RULES_BY_KIND, Outcome, (True, False)))


def synthetic(kind: str, outcome: Outcome) -> Result:
    """A result of the factory's check of this kind with this outcome, as that kind's probe would report it."""
    http = REGISTRY[kind].model.target_type == "http"
    details = {"table": "user_settings"} if outcome is Outcome.TABLE_MISSING else None
    return result(CHECK_OF_KIND[kind].name, outcome, status=STATUS.get(outcome) if http else None, details=details)


def raised(kind: str, outcome: Outcome, *, seen_good: bool, memory: CheckMemory | None = None) -> set[str]:
    """The alertnames `evaluate()` turns BAD for the synthetic result, as the engine calls it."""
    check = CHECK_OF_KIND[kind]
    out = evaluate(CONFIG, check, synthetic(kind, outcome), memory or (GOOD_BEFORE if seen_good else CheckMemory()),
                   rules=rules_for(CONFIG, check, RULES_BY_KIND), kind_rules=RULES_BY_KIND[kind])
    return {o.alertname for o in out if o.signal is Signal.BAD}


def test_the_alert_factory_has_a_check_of_every_kind() -> None:
    """Every registered kind has a check in tests/support/alerting.CHECKS, so every column below is exercised."""
    assert set(REGISTRY) == {c["kind"] for c in CHECKS}


@pytest.mark.parametrize(("kind", "outcome", "seen_good"), CELLS,
                         ids=[f"{k}-{o.value}-{'good' if g else 'never'}" for k, o, g in CELLS])
def test_every_cell_of_the_table_is_what_evaluate_does(kind: str, outcome: Outcome, seen_good: bool) -> None:
    """The declared alerts of one (kind, outcome, seen good before or never) are exactly the BAD ones of a
    synthetic result of that outcome on a check of that kind."""
    assert set(alerts_for(kind, outcome, RULES_BY_KIND, seen_good=seen_good)) == raised(
        kind, outcome, seen_good=seen_good)


@pytest.mark.parametrize(("kind", "outcome", "seen_good"), CELLS,
                         ids=[f"{k}-{o.value}-{'good' if g else 'never'}" for k, o, g in CELLS])
def test_every_failing_outcome_raises_an_alert(kind: str, outcome: Outcome, seen_good: bool) -> None:
    """No failure is silent: every failing outcome raises at least one alert on every kind; ok and rate_limited
    raise none."""
    found = raised(kind, outcome, seen_good=seen_good)
    assert (outcome in FAILING) == bool(found), found


@pytest.mark.parametrize("kind", list(RULES_BY_KIND))
def test_a_long_rate_limited_spell_is_check_failed(kind: str) -> None:
    """The table's rate_limited note: rate-limited for `rate_limited_after` (10 min) raises CheckFailed alone."""
    spell = CheckMemory(rate_limited_since=synthetic(kind, Outcome.RATE_LIMITED).started_at - 600.0)
    assert {CHECK_FAILED} == raised(kind, Outcome.RATE_LIMITED, seen_good=False, memory=spell)


def test_every_kind_raises_check_failed_and_only_known_rules() -> None:
    """CheckFailed is on every kind's alert list (the fallback works everywhere); every listed name is a rule."""
    assert [] == [kind for kind, names in RULES_BY_KIND.items() if CHECK_FAILED not in names]
    assert set() == {n for names in RULES_BY_KIND.values() for n in names} - set(RULES)


def test_cells_show_what_a_never_good_check_raises_instead() -> None:
    """An http 5xx: ContractRegression and EndpointDown, or EndpointDown alone when never good; an auth_contract
    5xx never good is CheckFailed."""
    table = outcome_table(RULES_BY_KIND)
    row = next(line for line in table.splitlines() if line.startswith("| `server_error` |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    by_kind = dict(zip(RULES_BY_KIND, cells, strict=True))
    assert "`ContractRegression`, `EndpointDown` (never good: `EndpointDown`)" == by_kind["http"]
    assert "`ContractRegression` (never good: `CheckFailed`)" == by_kind["auth_contract"]


@pytest.mark.parametrize("name", ["alert-rules", "outcome-alerts"])
def test_readme_holds_the_generated_tables(name: str) -> None:
    """README.md's generated blocks are exactly what alerts.judge.readme_tables writes from the code."""
    expected = blocks(RULES_BY_KIND)[name]
    assert expected == extract(README.read_text(encoding="utf-8"), name), (
        "README.md is stale: run `.venv/bin/python -m tests.alerts.test_outcome_table`")


def test_splice_replaces_only_its_block() -> None:
    """splice() swaps the text between one block's markers and leaves the rest alone; a missing block is an error."""
    doc = "a\n<!-- generated: x -->\nold\n<!-- end: x -->\nb\n<!-- generated: y -->\nkeep\n<!-- end: y -->\n"
    assert doc.replace("old", "new\ntext") == splice(doc, "x", "new\ntext")
    with pytest.raises(ValueError, match="no <!-- generated: z -->"):
        splice(doc, "z", "")


def _rewrite(path: Path, generated: dict[str, Any]) -> None:
    text = path.read_text(encoding="utf-8")
    for name, block in generated.items():
        text = splice(text, name, block)
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    from monitor.demo.faults import markdown_table

    _rewrite(README, {**blocks(RULES_BY_KIND),
                      "demo-faults": markdown_table({name: rule.severity for name, rule in RULES.items()})})
    print(f"rewrote the generated blocks of {README}")
