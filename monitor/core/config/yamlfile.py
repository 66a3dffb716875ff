"""Read a config file's YAML safely: bounded size, nesting and alias expansion, duplicate keys refused.

libyaml (CSafeLoader) composes the node graph, which is cheap even for a "billion laughs" file because an alias is
a second reference to the same node; the graph is checked before any Python object is built from it, so a hostile
file fails in milliseconds with one line instead of exhausting memory in the validation that walks it expanded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 16 * 1024 * 1024
"""A config file larger than this is refused (10,000 checks take about 2 MB)."""
MAX_SECRET_FILE_BYTES = 64 * 1024
"""A `${file:...}` secret larger than this is refused: a secret is a token or a key, not a file system."""
MAX_ALIAS_NODES = 100_000
"""Aliases may repeat at most this many values in all (anchors for shared defaults stay far below)."""
MAX_DEPTH = 64
"""Mappings and lists nested deeper than this are refused (a real config nests less than 12 levels)."""
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlProblem(ValueError):
    """A document refused before it was built; `line` is 1-based (None: the whole file)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def read_limited(path: Path, limit: int, *, what: str) -> str:
    """The text of `path`, refusing files over `limit` bytes and anything that is not a regular file (a FIFO or
    a device such as /dev/zero would block or never end). Raises OSError or ValueError with a reason."""
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer before the check below could refuse it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"the {what} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"the {what} is larger than {_size(limit)}")
    return data.decode("utf-8")


def parse(text: str) -> Any:
    """The document in `text`, checked (see the module docstring); YamlProblem or yaml.YAMLError if refused.

    libyaml parses when PyYAML has it (several times faster, far less garbage for a big file); a file it rejects
    is parsed again by the pure-Python parser, whose error messages the docs quote.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return _load(fast, text)
        except yaml.YAMLError as exc:
            if "maximum nesting depth" in str(exc):
                mark = getattr(exc, "problem_mark", None)
                raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep",
                                  mark.line + 1 if mark is not None else None) from None
    try:
        return _load(yaml.SafeLoader, text)
    except RecursionError:
        raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep") from None


def _load(loader_class: Any, text: str) -> Any:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if "*" in text:  # an alias is written *name: only then can values repeat or loop
            check_nodes(node)
        else:
            _check_plain(node, 1)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def check_nodes(root: yaml.Node) -> None:
    """Refuse an alias that contains itself, aliases repeating more than MAX_ALIAS_NODES values, nesting deeper
    than MAX_DEPTH, and a key written twice in one mapping (YAML would keep the last one silently)."""
    sizes: dict[int, int] = {}  # node id -> values in it, aliases written out
    repeated = 0
    open_ids: set[int] = set()
    # (node, depth, children pending?) in document order; a node met a second time was reached by an alias.
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, True)]
    while stack:
        node, depth, entering = stack.pop()
        ident = id(node)
        if not entering:
            open_ids.discard(ident)
            sizes[ident] = 1 + sum(sizes[id(child)] for child in _children(node))
            continue
        if ident in open_ids:
            raise YamlProblem("an alias refers to a value that contains it (a loop); write the value out",
                              node.start_mark.line + 1)
        if ident in sizes:
            repeated += sizes[ident]
            if repeated > MAX_ALIAS_NODES:
                raise YamlProblem(f"aliases repeat more than {MAX_ALIAS_NODES:,} values in all (a \"billion laughs\" "
                                  "file?); write the values out or use fewer aliases", node.start_mark.line + 1)
            continue
        if depth > MAX_DEPTH:
            raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            _check_duplicates(node)
        open_ids.add(ident)
        stack.append((node, depth, False))
        stack.extend((child, depth + 1, True) for child in reversed(_children(node)))


def _check_plain(node: yaml.Node, depth: int) -> None:
    """check_nodes for a document without aliases (each node met once): nesting and duplicate keys, lean, since
    this is every ordinary file's path (scalars, most of the nodes, are never visited on their own)."""
    if depth > MAX_DEPTH:
        raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        _check_duplicates(node)
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                _check_plain(key, depth + 1)
            if not isinstance(value, yaml.ScalarNode):
                _check_plain(value, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                _check_plain(item, depth + 1)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_duplicates(node: yaml.MappingNode) -> None:
    seen: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        line = key.start_mark.line + 1
        ident = (key.tag, key.value)
        if ident in seen:
            raise YamlProblem(f"duplicate key {key.value!r} (first at line {seen[ident]}); keep one of them", line)
        seen[ident] = line


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"
