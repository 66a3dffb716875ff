#!/usr/bin/env python3
"""Rewrite a file written against the flat alerts/ layout (before the regroup into judge/, lifecycle/, persist/,
sinks/) to the new module paths: imports, `alerts/x.py` paths, `alerts.x` mentions and moved tests' paths.

    python3 scripts/alerts-regroup.py FILE...      # rewrites in place, prints each file it changed

For a branch made before the regroup: after merging it, run this on the files it added or edited, then
`ruff check --select I --fix` (import order) and read the diff. `from alerts import a, b` of moved modules becomes
one line per subpackage (a renamed module keeps its old local name with `as`); names that did not move stay.
`alerts.rules` / `alerts.maintenance` in prose are left alone (they are config keys too); a moved test that finds
the repository with `Path(__file__).parents[2]` needs [3]. Lines saying `old` -> `new` (the README's changelog
entry for the regroup) are left as they are.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

MODULES = {
    "rules": "judge.rules", "evaluate": "judge.evaluate", "steps": "judge.journey", "certs": "judge.certs",
    "blocked": "judge.blocked", "saturated": "judge.saturated", "table": "judge.readme_tables",
    "machine": "lifecycle.machine", "hold": "lifecycle.hold", "maintenance": "lifecycle.maintenance",
    "plan": "lifecycle.plan", "states": "lifecycle.state_index", "explain": "lifecycle.explain",
    "gauges": "lifecycle.gauges",
    "store": "persist.database", "stored": "persist.rows", "journal": "persist.mirror", "state_lock": "persist.lock",
    "sink": "sinks.spec", "registry": "sinks.registry", "delivery": "sinks.delivery", "notify": "sinks.notify",
    "alertmanager": "sinks.alertmanager", "pagerduty": "sinks.pagerduty", "slack": "sinks.slack",
    "webhook": "sinks.webhook", "burn": "judge.burn", "credentials": "judge.credentials",
}
TESTS = {
    "test_rules": "judge.test_rules", "test_rules_signed_in": "judge.test_rules_signed_in",
    "test_certs": "judge.test_certs", "test_certs_e2e": "judge.test_certs_e2e", "test_blocked": "judge.test_blocked",
    "test_blocked_e2e": "judge.test_blocked_e2e", "test_saturated": "judge.test_saturated",
    "test_machine": "lifecycle.test_machine", "test_hold": "lifecycle.test_hold",
    "test_maintenance": "lifecycle.test_maintenance", "test_explain": "lifecycle.test_explain",
    "test_gauges": "lifecycle.test_gauges",
    "test_store": "persist.test_database", "test_journal": "persist.test_mirror",
    "test_state_dir_e2e": "persist.test_state_dir_e2e",
    "test_delivery": "sinks.test_delivery", "test_payloads": "sinks.test_payloads", "test_notify": "sinks.test_notify",
    "test_webhook_schema": "sinks.test_webhook_schema", "test_sink_proxy": "sinks.test_sink_proxy",
    "test_refused_alerts": "sinks.test_refused_alerts", "test_alertmanager_e2e": "sinks.test_alertmanager_e2e",
}
# Names that are also config keys (`alerts.rules`, `alerts.maintenance`) are left to a reader in prose.
AMBIGUOUS_IN_PROSE = {"rules", "maintenance"}
_NAMES = "|".join(sorted(MODULES, key=len, reverse=True))
_TEST_NAMES = "|".join(sorted(TESTS, key=len, reverse=True))
IMPORT_FROM = re.compile(rf"^([ \t]*from\s+)alerts\.({_NAMES})(\s+import\b)", re.M)
IMPORT = re.compile(rf"^([ \t]*import\s+)alerts\.({_NAMES})\b", re.M)
PATH = re.compile(rf"(?<![\w.])alerts/({_NAMES})\.py\b")
TEST_PATH = re.compile(rf"\btests/alerts/({_TEST_NAMES})\.py\b")
TEST_DOTTED = re.compile(rf"\btests\.alerts\.({_TEST_NAMES})\b")
PROSE = re.compile(rf"(?<![\w./])alerts\.({_NAMES})(?![\w])")


def _new(name: str) -> str:
    return MODULES[name]


MAPPING_LINE = re.compile(r"` -> `alerts\.")


def rewrite(text: str) -> str:
    """The file's text with every old path rewritten, except on lines that list the mapping itself."""
    return "".join(line if MAPPING_LINE.search(line) else _rewrite(line) for line in text.splitlines(keepends=True))


def _rewrite(text: str) -> str:
    text = IMPORT_FROM.sub(lambda m: f"{m[1]}alerts.{_new(m[2])}{m[3]}", text)
    text = IMPORT.sub(lambda m: f"{m[1]}alerts.{_new(m[2])}", text)
    text = PATH.sub(lambda m: f"alerts/{_new(m[1]).replace('.', '/')}.py", text)
    text = TEST_PATH.sub(lambda m: f"tests/alerts/{TESTS[m[1]].replace('.', '/')}.py", text)
    text = TEST_DOTTED.sub(lambda m: f"tests.alerts.{TESTS[m[1]]}", text)
    text = PROSE.sub(lambda m: m[0] if m[1] in AMBIGUOUS_IN_PROSE else f"alerts.{_new(m[1])}", text)
    return FROM_PACKAGE.sub(_from_package, text)


FROM_PACKAGE = re.compile(r"^([ \t]*)from alerts import ([\w, ]+)$", re.M)


def _from_package(m: re.Match[str]) -> str:
    """`from alerts import a, b as c` of modules -> one `from alerts.<subpackage> import ...` line per subpackage."""
    names = [name.strip() for name in m[2].split(",")]
    moved = [name for name in names if name.split(" as ")[0] in MODULES]
    if not moved:
        return m[0]
    # Names that did not move (a module still at the top, such as a branch's new one, or a re-exported name)
    # stay on a `from alerts import` line of their own.
    kept = [name for name in names if name not in moved]
    by_package: dict[str, list[str]] = {}
    for name in moved:
        module, _, alias = name.partition(" as ")
        package, new = MODULES[module].split(".")
        local = alias or module
        by_package.setdefault(package, []).append(new if new == local else f"{new} as {local}")
    lines = [f"{m[1]}from alerts import {', '.join(kept)}"] if kept else []
    lines += [f"{m[1]}from alerts.{package} import {', '.join(found)}" for package, found in sorted(by_package.items())]
    return "\n".join(lines)


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        old = path.read_text(encoding="utf-8")
        new = rewrite(old)
        if new != old:
            path.write_text(new, encoding="utf-8")
            print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
