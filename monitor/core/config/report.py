"""Config problems as people read them: file:line, field path with the check's name, what was given, what is allowed.

Every problem of a file is reported in one run: pydantic's errors, rewritten, plus the cross-section rules run on
the raw document when the models did not validate. A value is echoed only when it cannot be a secret: never one
that came from `${VAR}` / `${file:...}` expansion, never one given to a secret field (or a section holding one).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.core.config.alerting import SINK_KINDS
from monitor.core.config.base import NAME_PATTERN
from monitor.core.config.kinds import CHECK_KINDS
from monitor.core.config.locations import (
    UNKNOWN,
    Loc,
    annotation_at,
    keys_of,
    may_hold_secret,
    parse_path,
    strip_tags,
)
from monitor.core.config.root import cross_rules, raw_facts
from monitor.core.secrets import secret_parts

_SHOWN_MAX = 60
_TYPE_RULES = {
    "int_type": "must be a whole number", "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number", "float_type": "must be a number", "float_parsing": "must be a number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "string_type": "must be text (a string)", "dict_type": "must be a mapping (key: value)",
    "list_type": "must be a list",
}
_BOUNDS = {"less_than_equal": ("at most", "le"), "less_than": ("less than", "lt"),
           "greater_than_equal": ("at least", "ge"), "greater_than": ("greater than", "gt")}


class Report:
    """The problems of one file, each a line `file:line: path: message`, sorted by line."""

    def __init__(
        self, label: str, text: str, *, expanded: Iterable[Loc] = (),
        env_vars: Mapping[tuple[str, ...], str] | None = None, overrides: Mapping[Loc, str] | None = None,
        hidden: Iterable[str] = (),
    ) -> None:
        self.label = label
        self._hide = _hider(hidden)
        self._text = text
        self._lines: dict[Loc, int] | None = None
        self.expanded = set(expanded)
        self.env_vars = dict(env_vars or {})
        self.overrides = dict(overrides or {})
        self.names: dict[int, str] = {}
        self._items: list[tuple[int, int, str]] = []
        self._at: set[Loc] = set()

    @property
    def lines(self) -> dict[Loc, int]:
        """Each key path's line, indexed on first use: a file without problems never needs it, and indexing
        parses the YAML again (1,000 checks: ~10 MB of parser garbage the process keeps)."""
        if self._lines is None:
            self._lines = line_index(self._text) if self._text else {}
        return self._lines

    # -- collecting ---------------------------------------------------------------------------------------

    def learn_names(self, data: Any) -> None:
        """Remember each check's name (when it is a plain, valid name) to show it next to `checks[i]`."""
        checks = data.get("checks") if isinstance(data, dict) else None
        if not isinstance(checks, list):
            return
        for i, check in enumerate(checks):
            name = check.get("name") if isinstance(check, dict) else None
            if (isinstance(name, str) and re.fullmatch(NAME_PATTERN, name)
                    and not self._from_expansion(("checks", i, "name"))):
                self.names[i] = name

    def add(self, loc: Loc, message: str, *, line: bool = True) -> None:
        """Record one problem at `loc` (a path into the document); `line` False leaves the line number out."""
        number = self._line_of(loc) if line else None
        where = f"{self.label}:{number}" if number is not None else self.label
        text = f"{where}: {self.path(loc) or '(top level)'}: {message}"
        if self._hide is not None:  # the second lock: no rule may quote what came from a secret's source
            text = self._hide.sub("(hidden)", text)
        if all(text != t for _, _, t in self._items):
            self._items.append((number if number is not None else 1 << 30, len(self._items), text))
            self._at.add(loc)

    def defer(self, loc: Loc) -> None:
        """Mark `loc` as accounted for elsewhere (an unset variable the verb does not need): validation errors under
        it are not reported."""
        self._at.add(loc)

    def add_validation(self, exc: ValidationError) -> None:
        """Record every pydantic error, rewritten; errors under a path that already has a problem are dropped."""
        earlier = set(self._at)
        for err in exc.errors(include_url=False):
            raw_loc = tuple(err["loc"])
            loc = strip_tags(raw_loc)
            if any(loc[: len(p)] == p for p in earlier if p):
                continue
            message = self._message(err, loc, raw_loc)
            origin = self._origin(loc)
            self.add(loc, message + (f" ({origin})" if origin else ""), line=not origin.startswith("from --"))

    def add_cross(self, problems: Iterable[tuple[str, str]]) -> None:
        """Record (field path, problem) pairs from the cross-section rules."""
        for path, message in problems:
            self.add(parse_path(path), message)

    def add_raw_cross(self, data: Any) -> None:
        """Run the cross-section rules on the raw document (used when the models did not validate)."""
        self.add_cross(cross_rules(*raw_facts(data)))

    @property
    def problems(self) -> list[str]:
        """Every problem line, in file order; problems of the whole file (no line) last."""
        return [text for _, _, text in sorted(self._items)]

    # -- formatting ---------------------------------------------------------------------------------------

    def path(self, loc: Iterable[str | int]) -> str:
        """`checks[2] (settings_get).timeout` for ("checks", 2, "timeout")."""
        out = ""
        parts = list(loc)
        for i, part in enumerate(parts):
            if isinstance(part, int):
                out += f"[{part}]"
                if i == 1 and parts[0] == "checks" and part in self.names:
                    out += f" ({self.names[part]})"
            else:
                shown = part if part.isprintable() else repr(part)  # a key with a newline keeps the line one line
                out += f".{shown}" if out else shown
        return out

    def _line_of(self, loc: Loc) -> int | None:
        probe = tuple(loc)
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = probe[:-1]
        return None

    def _origin(self, loc: Loc) -> str:
        for path, origin in self.overrides.items():
            if loc[: len(path)] == path:
                return origin
        env = next((p for p in self.env_vars if tuple(str(x) for x in loc[: len(p)]) == p), None)
        return f"set by environment variable {self.env_vars[env]}" if env is not None else ""

    def _from_expansion(self, loc: Loc) -> bool:
        """Whether the value at `loc` came from `${...}` or a PAM_MONITOR_* variable (either may be a secret)."""
        if any(loc[: len(p)] == p or p[: len(loc)] == loc for p in self.expanded):
            return True
        text = tuple(str(x) for x in loc)
        return any(text[: len(p)] == p or p[: len(text)] == text for p in self.env_vars)

    def _hidden(self, loc: Loc, raw_loc: Loc) -> bool:
        """Whether the value at this place may be a secret and must not be echoed."""
        if self._from_expansion(loc):
            return True
        annotation, _ = annotation_at(raw_loc)
        return annotation is UNKNOWN or may_hold_secret(annotation)

    def _message(self, err: Mapping[str, Any], loc: Loc, raw_loc: Loc) -> str:
        kind = err["type"]
        ctx = err.get("ctx") or {}
        given = err.get("input")
        hidden = self._hidden(loc, raw_loc)
        if kind == "extra_forbidden":
            return _unknown_key(loc, raw_loc)
        if kind == "missing":
            return "required key is missing"
        if kind == "union_tag_invalid":
            return f"unknown kind {ctx.get('tag')!r}; allowed: {ctx.get('expected_tags')}"
        if kind == "union_tag_not_found":
            return f"missing key 'kind'; allowed: {', '.join(SINK_KINDS if 'sinks' in loc else CHECK_KINDS)}"
        if kind == "string_pattern_mismatch":
            rule = f"has characters that are not allowed; must match {ctx.get('pattern')}"
        elif kind in ("literal_error", "enum"):
            expected = str(ctx.get("expected", ""))
            rule = f"must be one of {expected}"
            close = difflib.get_close_matches(str(given), re.findall(r"'([^']*)'", expected), n=1)
            if close and not hidden and isinstance(given, str):
                return f"{rule}, got {_show(given)}; did you mean {close[0]!r}?"
        elif kind in _BOUNDS:
            words, key = _BOUNDS[kind]
            rule = f"must be {words} {ctx.get(key)}"
        elif kind in ("too_short", "too_long"):
            n = ctx.get("min_length" if kind == "too_short" else "max_length")
            rule = f"must have {'at least' if kind == 'too_short' else 'at most'} {n} item{'s' if n != 1 else ''}"
        elif kind == "string_too_short":
            n = ctx.get("min_length")
            rule = "must not be empty" if n == 1 else f"must be at least {n} characters long"
        elif kind in ("model_type", "model_attributes_type"):
            annotation, _ = annotation_at(raw_loc)
            keys = keys_of(annotation)
            rule = "must be a mapping (key: value)" + (f" with keys among: {', '.join(keys)}" if keys else "")
        elif kind in _TYPE_RULES:
            rule = _TYPE_RULES[kind] + _range(raw_loc)
        else:
            rule = _strip_prefix(str(err["msg"]))
            if hidden and isinstance(given, str) and given.strip():
                return _scrub(rule, given)
            if not _is_scalar(given) or repr(given) in rule or str(given) in rule:
                return rule
        sep = ";" if kind in ("model_type", "model_attributes_type") else ","  # a comma would read as one more key
        if hidden:
            return f"{rule}{sep} got {_kind_of(given)} (value not shown: it may be a secret)"
        shown = f"{rule}{sep} got {_show(given)}"
        if kind == "list_type" and _is_scalar(given) and given is not None:
            shown += f"; write {_show([given])}"
        return shown


# ------------------------------------------------------------------------------------------------ helpers


_HIDE_MIN = 6  # shorter values (a port, `info`) would blank out ordinary words of the messages


def _hider(values: Iterable[str]) -> re.Pattern[str] | None:
    """A pattern matching every value, in every form a message could quote it: as is, stripped, each of its
    lines, repr- or JSON-escaped (a newline as \\n), its secret parts (a token, a URL password); any case."""
    forms: set[str] = set()
    for value in values:
        stripped = value.strip()
        forms.update((value, stripped, repr(stripped)[1:-1], json.dumps(stripped)[1:-1]))
        forms.update(line.strip() for line in stripped.splitlines())
        forms.update(secret_parts(stripped) if stripped else ())
    kept = sorted((f for f in forms if len(f) >= _HIDE_MIN), key=len, reverse=True)
    return re.compile("|".join(re.escape(f) for f in kept), re.IGNORECASE) if kept else None


def _unknown_key(loc: Loc, raw_loc: Loc) -> str:
    parent, _ = annotation_at(raw_loc[:-1])
    allowed = keys_of(parent)
    key = str(loc[-1]) if loc else "?"
    hint = ""
    if allowed:
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        hint += f" allowed keys: {', '.join(allowed)}"
    return f"unknown key {key!r}{hint}"


def _scrub(message: str, value: str) -> str:
    """The validator's message without the value, however it quoted it (validators may strip or lowercase it)."""
    text = re.escape(value.strip())
    message = re.sub(f"'{text}'|\"{text}\"", "(value hidden)", message, flags=re.IGNORECASE)
    if len(value.strip()) >= 4:
        message = re.sub(text, "(hidden)", message, flags=re.IGNORECASE)
    return message


def _strip_prefix(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "nothing (null)" if value is None else "a value"


def _show(value: Any) -> str:
    """A short rendering of a value as the file wrote it (YAML terms: true, null, [a, b])."""
    if isinstance(value, str):
        text = repr(value)
    elif value is None or isinstance(value, bool | int | float | list | dict):
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        if len(text.splitlines()) > 1:  # a string with a line break inside: YAML folds it over lines, JSON escapes it
            text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = _kind_of(value)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."


def _range(raw_loc: Loc) -> str:
    """` from 1 to 100` when the field at `raw_loc` carries bounds."""
    _, meta = annotation_at(raw_loc, with_meta=True)
    low = next((getattr(m, "ge", None) for m in meta if getattr(m, "ge", None) is not None), None)
    high = next((getattr(m, "le", None) for m in meta if getattr(m, "le", None) is not None), None)
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" of at least {low}"
    if high is not None:
        return f" of at most {high}"
    return ""


def line_index(text: str) -> dict[Loc, int]:
    """Map each key path in the YAML document to its 1-based line, for error messages."""
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return {}
    index: dict[Loc, int] = {}

    def walk(node: yaml.Node, path: Loc) -> None:
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = (*path, str(key_node.value))
                index[key] = key_node.start_mark.line + 1
                walk(value_node, key)
                index[key] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return index
