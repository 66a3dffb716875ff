"""`expect.json` values: plain equality, or a matcher (`one_of`, `exists`, `regex`), checked when the file loads.

Under `expect.json`, each key is a dotted path into the response's JSON (`status`, `checks.db`, `items.0.id`) and
each value says what the field must hold:

    status: healthy                        equal to this value (True is never 1, '1' is never 1)
    status: {one_of: [good, optimal]}      equal to one of these values
    trace_id: {exists: true}               present (any value, null included); `exists: false`: absent
    version: {regex: "^2\\."}              a string in which this regular expression is found (re.search)

A mapping whose keys are all operator names (`one_of`, `exists`, `regex`) is a matcher and takes exactly one of
them; any other mapping is compared for equality as a whole. A mapping mixing operator names with other keys, two
operators in one mapping, an empty `one_of`, a non-boolean `exists` or a regular expression that does not compile
is a config error, reported when the file loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

MATCHER_KEYS: frozenset[str] = frozenset({"one_of", "exists", "regex"})
"""The operator names that make a mapping under `expect.json` a matcher rather than a value to compare."""

Op = Literal["equals", "one_of", "exists", "regex"]


@dataclass(frozen=True, slots=True)
class JsonMatcher:
    """What one `expect.json` entry asks of its field: `op` and its argument (a value, a list, a bool, a regex)."""

    op: Op
    arg: Any


def as_matcher(expected: Any) -> JsonMatcher:
    """The matcher an `expect.json` value stands for; raises ValueError saying what is wrong with it."""
    if not isinstance(expected, Mapping) or not expected or not set(expected) & MATCHER_KEYS:
        return JsonMatcher("equals", expected)
    keys = set(expected)
    if keys - MATCHER_KEYS:
        others = ", ".join(sorted(str(k) for k in keys - MATCHER_KEYS))
        raise ValueError(
            f"mixes matcher keys ({', '.join(sorted(keys & MATCHER_KEYS))}) with other keys ({others}); "
            "a matcher takes exactly one of one_of, exists, regex"
        )
    if len(keys) > 1:
        raise ValueError(f"has {len(keys)} matchers ({', '.join(sorted(keys))}); write exactly one per path")
    (op,) = keys
    arg = expected[op]
    if op == "one_of":
        if not isinstance(arg, list) or not arg:
            raise ValueError("one_of must be a non-empty list of values")
        return JsonMatcher("one_of", tuple(arg))
    if op == "exists":
        if not isinstance(arg, bool):
            raise ValueError(f"exists must be true or false, got {arg!r}")
        return JsonMatcher("exists", arg)
    if not isinstance(arg, str):
        raise ValueError(f"regex must be a string, got {arg!r}")
    try:
        return JsonMatcher("regex", re.compile(arg))
    except re.error as exc:
        raise ValueError(f"regex {arg!r} is not a valid regular expression: {exc}") from None


def validate_json_expectations(fields: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first path whose expectation is not a valid value or matcher."""
    for path, expected in fields.items():
        if not path or any(not part for part in path.split(".")):
            raise ValueError(f"json path {path!r} is not a dotted path such as status or checks.db")
        try:
            as_matcher(expected)
        except ValueError as exc:
            raise ValueError(f"json field {path}: {exc}") from None
