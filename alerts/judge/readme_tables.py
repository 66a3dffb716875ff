"""The README's alert tables, written from the rule records: which alert each outcome raises on each check kind,
and the rules themselves. Tests hold the tables equal to `evaluate()` and to README.md, so they cannot drift.

Each table sits in README.md between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; `splice()` replaces it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from alerts.judge.rules import CHECK_FAILED, FAILING, RULES
from monitor.core.kinds import kind_rules
from monitor.core.results import Outcome


def alerts_for(kind: str, outcome: Outcome, rules_by_kind: Mapping[str, Sequence[str]], *,
               seen_good: bool) -> tuple[str, ...]:
    """The alerts a result with this outcome turns BAD on a check of this kind, as the rules declare it.

    `seen_good`: the check has answered as expected before (a ContractRegression needs that). A `rate_limited`
    result raises nothing here (see the table's notes for a long rate-limited spell).
    """
    if outcome not in FAILING:
        return ()
    names = kind_rules(rules_by_kind.get(kind, ()))
    raised = tuple(
        name for name in names if not RULES[name].fallback and outcome in RULES[name].fires_on(names)
        and (seen_good or not RULES[name].after_good)
    )
    return raised or tuple(name for name in names if RULES[name].fallback)


def outcome_table(rules_by_kind: Mapping[str, Sequence[str]]) -> str:
    """Markdown: one row per outcome, one column per kind, each cell the alerts that outcome raises."""
    kinds = list(rules_by_kind)
    lines = ["| outcome | " + " | ".join(f"`{k}`" for k in kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for outcome in Outcome:
        cells = [_cell(kind, outcome, rules_by_kind) for kind in kinds]
        lines.append(f"| `{outcome.value}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "- *never good*: `ContractRegression` needs a good answer first (`from` is the last good status, kept across "
        "restarts); a check that never answered as expected raises what the brackets say instead.",
        "- `rate_limited` (a 429) is inconclusive: no alert fires or resolves on it and it breaks no streak; a check "
        f"rate-limited for `alerts.rate_limited_after` (default 10 min) raises `{CHECK_FAILED}`, and the first "
        "conclusive result after that decides.",
        "- `table_missing` is shown as a 5xx whose body names a missing relation; a `postgrest` 404 `PGRST205` is not "
        "a server error, so it raises `TableMissing` alone.",
        f"- `{CHECK_FAILED}` turns good again on `ok`, or when a more specific alert now covers the failure.",
    ]
    return "\n".join(lines)


def rules_table() -> str:
    """Markdown: every built-in rule, when it fires and its default severity."""
    lines = ["| alertname | fires when | severity |", "|---|---|---|"]
    lines += [f"| `{rule.name}` | {rule.fires_when} | {rule.severity} |" for rule in RULES.values()]
    return "\n".join(lines)


def blocks(rules_by_kind: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Every generated README block by name."""
    return {"alert-rules": rules_table(), "outcome-alerts": outcome_table(rules_by_kind)}


def _block(name: str) -> re.Pattern[str]:
    tag = re.escape(name)
    return re.compile(rf"<!-- generated: {tag} -->\n(?:(.*?)\n)?<!-- end: {tag} -->", re.S)


def splice(document: str, name: str, block: str) -> str:
    """The document with the text between `<!-- generated: name -->` and `<!-- end: name -->` replaced."""
    pattern = _block(name)
    if not pattern.search(document):
        raise ValueError(f"no <!-- generated: {name} --> ... <!-- end: {name} --> block in the document")
    return pattern.sub(lambda m: f"<!-- generated: {name} -->\n{block}\n<!-- end: {name} -->", document, count=1)


def extract(document: str, name: str) -> str | None:
    """The text of one generated block, or None when the document has no such block."""
    match = _block(name).search(document)
    return (match.group(1) or "") if match else None


def _cell(kind: str, outcome: Outcome, rules_by_kind: Mapping[str, Sequence[str]]) -> str:
    if outcome is Outcome.RATE_LIMITED:
        return f"— (after a long spell: `{CHECK_FAILED}`)" if CHECK_FAILED in rules_by_kind.get(kind, ()) else "—"
    good = alerts_for(kind, outcome, rules_by_kind, seen_good=True)
    never = alerts_for(kind, outcome, rules_by_kind, seen_good=False)
    text = ", ".join(f"`{name}`" for name in good) or "—"
    if never != good:
        text += " (never good: " + (", ".join(f"`{name}`" for name in never) or "—") + ")"
    return text
