"""The import graph keeps its floors: monitor.core stands alone, probes/alerts stand on it, no one reads another's `_x`.

Imports are read with `ast` (nothing is imported), wherever they sit: module level, inside functions, under
`if TYPE_CHECKING:`. A failure names the importing module, its file and line, and the import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("monitor", "probes", "alerts", "bench")
"""Our top-level packages; imports of anything else (stdlib, third party) are not graded."""

PRIVATE_RULE_EXEMPT = ("tests", "bench")
"""Tests and benchmarks may reach into private modules to exercise or measure them; the demo may not."""

# Known violations in code other helpers own on their own branches (the demo moves into monitor/demo/ and stops
# importing probes' private modules). The integrator empties this set after merging those branches; an entry
# that no longer matches a real import fails test_allow_list_has_no_stale_entries, so it cannot linger.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Import:
    """One import edge: `importer` (a module) imports `imported` (a module), written at `where` as `text`."""

    importer: str
    imported: str
    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.imported} ({self.text})"


def module_index(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the given top-level packages."""
    index: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            index[".".join(parts)] = path
    return index


def _resolve_from(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module a `from X import ...` names (relative levels resolved against the importer)."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, index: dict[str, Path], root: Path) -> Iterator[Import]:
    """Every import of one of our modules in this file; `from pkg import mod` counts as importing pkg.mod."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    ours = tuple(name.split(".")[0] for name in index)
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ours:
                    yield Import(module, alias.name, where, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(node, module, is_package)
            if source.split(".")[0] not in ours:
                continue
            names_by_target: dict[str, list[str]] = {}
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                names_by_target.setdefault(candidate if candidate in index else source, []).append(alias.name)
            statement = f"from {'.' * node.level}{node.module or ''} import"
            for target, names in names_by_target.items():
                yield Import(module, target, where, f"{statement} {', '.join(names)}")


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> list[Import]:
    """Every import edge between our modules."""
    index = module_index(root, packages)
    return [edge for module, path in index.items() for edge in imports_of(module, path, index, root)]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _private_owner(module: str) -> str | None:
    """For a module below a private `_x` component, the package that owns it (the part before `_x`)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def core_violations(graph: Iterable[Import]) -> list[Import]:
    """monitor.core importing probes, alerts, bench, or monitor outside monitor.core."""
    return [e for e in graph if _within(e.importer, "monitor.core") and not _within(e.imported, "monitor.core")]


def floor_violations(graph: Iterable[Import]) -> list[Import]:
    """probes/ or alerts/ importing from monitor anything but monitor.core."""
    return [
        e for e in graph
        if (_within(e.importer, "probes") or _within(e.importer, "alerts"))
        and _within(e.imported, "monitor") and not _within(e.imported, "monitor.core")
    ]


def private_violations(graph: Iterable[Import]) -> list[Import]:
    """A module outside a package importing one of that package's private `_x` modules (tests and bench exempt)."""
    found = []
    for e in graph:
        owner = _private_owner(e.imported)
        if owner is None or _within(e.importer, owner):
            continue
        if any(_within(e.importer, exempt) for exempt in PRIVATE_RULE_EXEMPT):
            continue
        found.append(e)
    return found


def _unexpected(violations: list[Import]) -> list[str]:
    return [str(v) for v in violations if (v.importer, v.imported) not in KNOWN_VIOLATIONS]


def _listing(lines: Iterable[object]) -> str:
    """The offending imports one per line, for the failure message (pytest's diff would cut the list short)."""
    return "\n" + "\n".join(str(line) for line in lines)


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    """The import graph of the repository's packages."""
    edges = import_graph()
    assert {"monitor.core.config.loader", "probes.deps", "alerts.engine"} <= {e.importer for e in edges}
    return edges


def test_core_imports_nothing_above_it(graph: list[Import]) -> None:
    """monitor.core imports nothing from probes/, alerts/, bench/ or the rest of monitor/ (it is the ground floor)."""
    found = _unexpected(core_violations(graph))
    assert [] == found, _listing(found)


def test_probes_and_alerts_take_only_core_from_monitor(graph: list[Import]) -> None:
    """probes/ and alerts/ import from monitor only monitor.core (never the runner, daemon, demo...)."""
    found = _unexpected(floor_violations(graph))
    assert [] == found, _listing(found)


def test_no_module_imports_another_packages_private_modules(graph: list[Import]) -> None:
    """A `_x` module is imported only from inside the package that holds it (tests and bench excepted)."""
    found = _unexpected(private_violations(graph))
    assert [] == found, _listing(found)


def test_allow_list_has_no_stale_entries(graph: list[Import]) -> None:
    """Every allow-listed violation still exists; once its code is fixed the entry must go (and this says which)."""
    live = {(v.importer, v.imported) for v in core_violations(graph) + floor_violations(graph)
            + private_violations(graph)}
    stale = KNOWN_VIOLATIONS - live
    assert set() == stale, _listing(f"remove from KNOWN_VIOLATIONS: {entry}" for entry in sorted(stale))


def test_the_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    """On a made-up tree, each rule reports exactly its offending imports: relative, nested and `from pkg import _m`."""
    files = {
        "monitor/__init__.py": "",
        "monitor/core/__init__.py": "",
        "monitor/core/ok.py": "from monitor.core import clock\nfrom . import clock as c2\n",
        "monitor/core/clock.py": "import os\n",
        "monitor/core/bad.py": "def f():\n    from probes import http\n    from .. import runner\n",
        "monitor/runner.py": "from probes import _pg\n",
        "monitor/demo.py": "import probes._jwt\n",
        "probes/__init__.py": "",
        "probes/http.py": "from monitor.core.clock import iso\nfrom . import _pg\nfrom monitor.runner import x\n",
        "probes/_pg.py": "",
        "probes/_jwt.py": "",
        "alerts/__init__.py": "",
        "alerts/engine.py": "from monitor import runner\n",
        "bench/__init__.py": "",
        "bench/run.py": "from probes import _pg\nfrom monitor import runner\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, PACKAGES)

    def pairs(found: list[Import]) -> set[tuple[str, str]]:
        return {(e.importer, e.imported) for e in found}

    assert {("monitor.core.bad", "probes.http"), ("monitor.core.bad", "monitor.runner")} == pairs(
        core_violations(graph))
    assert {("probes.http", "monitor.runner"), ("alerts.engine", "monitor.runner")} == pairs(floor_violations(graph))
    assert {("monitor.runner", "probes._pg"), ("monitor.demo", "probes._jwt")} == pairs(private_violations(graph))
    bad = next(e for e in core_violations(graph) if e.imported == "monitor.runner")
    assert "monitor/core/bad.py:3: monitor.core.bad imports monitor.runner (from .. import runner)" == str(bad)
