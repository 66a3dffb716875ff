"""JSON bodies: parsing with a nesting limit, dotted paths into a document, and the `expect.json` comparisons.

A body nested deeper than MAX_JSON_DEPTH is refused before Python's parser sees it (which would otherwise raise
RecursionError at about a thousand levels): `loads` raises JsonTooDeep, a ValueError, so every prober that treats
unparseable JSON as `invalid_response` does the same with it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from monitor.core.config import as_matcher

MAX_JSON_DEPTH = 128
"""Arrays and objects nested deeper than this are refused (serde_json's default; real APIs stay under 20)."""
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JsonTooDeep(ValueError):
    """A JSON document nested deeper than MAX_JSON_DEPTH."""

    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        super().__init__(f"the JSON is nested more than {limit} levels deep (pam-monitor's limit), so it is not parsed")


def nesting_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in `data` (brackets inside strings do not count)."""
    if data.count(b"[") + data.count(b"{") == 0:
        return 0
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(_STEP[b] for b in brackets), default=0)


def loads(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """json.loads with a nesting limit: JsonTooDeep past `limit` levels, ValueError for anything not JSON."""
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    # Cheap first: a body with no more openings than the limit cannot nest deeper than it.
    if raw.count(b"[") + raw.count(b"{") > limit and nesting_depth(raw) > limit:
        raise JsonTooDeep(limit)
    try:
        return json.loads(raw)
    except RecursionError:  # only if the stack was already deep when we were called
        raise JsonTooDeep(limit) from None


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def json_path(document: Any, path: str) -> Any:
    """The value at a dotted path (`checks.db`, `items.0.id`), or MISSING."""
    current = document
    for part in path.split("."):
        if isinstance(current, dict):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list) and re.fullmatch(r"\d+", part):
            index = int(part)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def same_json_value(expected: Any, actual: Any) -> bool:
    """Equality that does not let True pass for 1 or '1' for 1."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected is actual
    return bool(expected == actual)


def json_field_problems(document: Any, fields: Mapping[str, Any]) -> list[str]:
    """One sentence per `expect.json` entry that does not hold, with the actual value beside the expectation.

    A value is compared for equality, or is a matcher (`one_of`, `exists`, `regex`: monitor/core/config/matchers.py,
    validated when the config loads).
    """
    problems = []
    for path, expected in fields.items():
        problem = _field_problem(json_path(document, path), expected)
        if problem is not None:
            problems.append(f"json field {path}: {problem}")
    return problems


def _field_problem(actual: Any, expected: Any) -> str | None:
    matcher = as_matcher(expected)
    got = "but the field is missing" if actual is MISSING else f"got {short_repr(actual)}"
    if matcher.op == "exists":
        if matcher.arg == (actual is not MISSING):
            return None
        return "expected to exist, but the field is missing" if matcher.arg else f"expected to be absent, {got}"
    if matcher.op == "one_of":
        if actual is not MISSING and any(same_json_value(option, actual) for option in matcher.arg):
            return None
        options = ", ".join(short_repr(option, 40) for option in matcher.arg)
        return f"expected one of {options if len(options) <= 160 else options[:157] + '...'}, {got}"
    if matcher.op == "regex":
        if isinstance(actual, str) and matcher.arg.search(actual) is not None:
            return None
        return f"expected a string matching regex {short_repr(matcher.arg.pattern)}, {got}"
    if actual is not MISSING and same_json_value(matcher.arg, actual):
        return None
    return f"expected {short_repr(matcher.arg)}, {got}"


def short_repr(value: Any, limit: int = 80) -> str:
    """repr() cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def status_list(statuses: Collection[int]) -> str:
    """'401|403' for a set of expected statuses."""
    return "|".join(str(s) for s in statuses)


