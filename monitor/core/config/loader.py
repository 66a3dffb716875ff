"""Load a config file: YAML, `${VAR}` expansion, PAM_MONITOR_* overrides, and one clear line per problem."""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor.core.config.alerting import SINK_KINDS
from monitor.core.config.checks import CHECK_KINDS
from monitor.core.config.root import Config, cross_check
from monitor.core.errors import ConfigError

ENV_PREFIX = "PAM_MONITOR_"
_VAR = re.compile(r"\$\$|\$\{(?P<body>[^}]*)\}")
_UNION_TAGS = frozenset(CHECK_KINDS) | frozenset(SINK_KINDS)


class _Settings(Config, BaseSettings):
    """Config plus PAM_MONITOR_* environment overrides, which win over the file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


def load_config(
    path: str | Path | None,
    *,
    listen: str | None = None,
    environ: Mapping[str, str] | None = None,
    shard: tuple[int, int] | None = None,
) -> Config:
    """Read, expand, override and validate a config file; raise ConfigError listing every problem.

    `path` None means no file: the built-in defaults plus environment overrides.
    `environ` (default os.environ) is where `${VAR}` references are looked up; PAM_MONITOR_* overrides are
    always read from the process environment by pydantic-settings.
    `listen` (from --listen) wins over both. `shard` (i, n) keeps only the checks whose stable hash
    falls in shard i of n.
    """
    env = os.environ if environ is None else environ
    label = str(path) if path is not None else "<defaults>"
    text = ""
    raw: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError([f"{label}: file not found; pass an existing file with --config"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{label}: cannot read the file: {exc.__class__.__name__}: {exc}"]) from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark is not None else label
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError([f"{label}: the top level must be a mapping of keys (service:, targets:, checks:, ...)"])
    lines = _line_index(text) if text else {}
    problems: list[str] = []
    expanded = _expand(raw, (), env, problems, label, lines)
    if listen is not None:
        expanded = {**expanded, "listen": listen}
    if problems:
        raise ConfigError(problems)
    env_paths = _env_override_paths(os.environ)
    try:
        config: Config = _Settings(**expanded)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, label, lines, env_paths)) from None
    cross = cross_check(config)
    if cross:
        raise ConfigError([_line(label, lines, _parse_path(p), p, msg) for p, msg in cross])
    if shard is not None:
        config = apply_shard(config, *shard)
    return config


def apply_shard(config: Config, index: int, count: int) -> Config:
    """Keep the checks that belong to shard `index` of `count` by a stable hash of the check name."""
    kept = [c for c in config.checks if zlib.crc32(c.name.encode()) % count == index]
    return config.model_copy(update={"checks": kept})


def parse_shard(text: str) -> tuple[int, int]:
    """Parse `i/n` (0 <= i < n)."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ValueError(f"--shard must be i/n with 0 <= i < n, such as 0/2, got {text!r}")
    return int(match.group(1)), int(match.group(2))


# ---------------------------------------------------------------------------------------------- ${VAR}


def _expand(
    value: Any, path: tuple[str | int, ...], env: Mapping[str, str], problems: list[str], label: str,
    lines: Mapping[tuple[str | int, ...], int],
) -> Any:
    if isinstance(value, str):
        return _expand_str(value, path, env, problems, label, lines)
    if isinstance(value, list):
        return [_expand(v, (*path, i), env, problems, label, lines) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, (*path, str(k)), env, problems, label, lines) for k, v in value.items()}
    return value


def _expand_str(
    text: str, path: tuple[str | int, ...], env: Mapping[str, str], problems: list[str], label: str,
    lines: Mapping[tuple[str | int, ...], int],
) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        body = match.group("body")
        if body.startswith("file:"):
            file_path = Path(body[5:]).expanduser()
            try:
                return file_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(
                    _line(label, lines, path, _fmt_path(path),
                          f"cannot read secret file {str(file_path)!r} ({exc.strerror or exc}); "
                          "check the path and its permissions")
                )
                return ""
        name, sep, default = body.partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.append(
                _line(label, lines, path, _fmt_path(path),
                      f"${{{body}}} is not a valid reference; use ${{NAME}}, ${{NAME:-default}} or ${{file:/path}}")
            )
            return ""
        if name in env and env[name] != "":
            return env[name]
        if sep:
            return default
        problems.append(
            _line(label, lines, path, _fmt_path(path),
                  f"environment variable {name} is not set; export {name}=... or write ${{{name}:-default}}")
        )
        return ""

    return _VAR.sub(replace, text)


# ---------------------------------------------------------------------------------------------- errors


def _format_errors(
    exc: ValidationError, label: str, lines: Mapping[tuple[str | int, ...], int], env_paths: set[tuple[str, ...]]
) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for err in exc.errors(include_input=False, include_url=False):
        loc = _strip_tags(err["loc"])
        message = _message(err, loc, tuple(err["loc"]))
        line = _line(label, lines, loc, _fmt_path(loc), message)
        origin = next((p for p in env_paths if tuple(str(x) for x in loc[: len(p)]) == p), None)
        if origin is not None:
            line += f" (set by environment variable {ENV_PREFIX}{'__'.join(origin).upper()})"
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


def _message(err: Mapping[str, Any], loc: tuple[str | int, ...], raw_loc: tuple[str | int, ...]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _allowed_keys(raw_loc[:-1])
        key = str(loc[-1]) if loc else "?"
        hint = ""
        if allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            hint += f" allowed keys: {', '.join(allowed)}"
        return f"unknown key {key!r}{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown kind {ctx.get('tag')!r}; allowed: {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"missing key 'kind'; allowed: {', '.join(_tags_for(loc))}"
    if kind == "string_pattern_mismatch":
        return f"has characters that are not allowed; must match {ctx.get('pattern')}"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg


def _tags_for(loc: tuple[str | int, ...]) -> tuple[str, ...]:
    return SINK_KINDS if "sinks" in loc else CHECK_KINDS


def _strip_tags(loc: Iterable[str | int]) -> tuple[str | int, ...]:
    """Drop the discriminator values pydantic inserts after a list index (`checks.3.http.expect`)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and out and isinstance(out[-1], int) and part in _UNION_TAGS:
            continue
        out.append(part)
    return tuple(out)


def _allowed_keys(raw_loc: tuple[str | int, ...]) -> list[str]:
    """The keys the model at `raw_loc` (pydantic's location, union tags included) accepts."""
    current: Any = Config
    for part in raw_loc:
        current = _unwrap(current)
        if isinstance(current, _UnionOf):
            current = next((m for m in current.members if _tag_of(m) == part), None)
            if current is None:
                return []
            continue
        origin = typing.get_origin(current)
        if origin in (list, dict):
            current = typing.get_args(current)[-1]
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        current = _field_by_key(current, str(part))
        if current is None:
            return []
    return _keys_of(_unwrap(current))


def _tag_of(model: Any) -> str | None:
    if isinstance(model, type) and issubclass(model, BaseModel) and "kind" in model.model_fields:
        args = typing.get_args(model.model_fields["kind"].annotation)
        return str(args[0]) if args else None
    return None


def _keys_of(model: Any) -> list[str]:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted((f.alias or name) for name, f in model.model_fields.items())
    return []


def _field_by_key(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field.annotation
    return None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
            return _UnionOf(args)
        return annotation


class _UnionOf:
    def __init__(self, members: list[Any]) -> None:
        self.members = members


def _line(
    label: str, lines: Mapping[tuple[str | int, ...], int], loc: tuple[str | int, ...], path: str, message: str
) -> str:
    number = None
    probe = tuple(loc)
    while probe:
        if probe in lines:
            number = lines[probe]
            break
        probe = probe[:-1]
    where = f"{label}:{number}" if number is not None else label
    return f"{where}: {path or '(top level)'}: {message}"


def _fmt_path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _parse_path(text: str) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text):
        out.append(int(index) if index else name)
    return tuple(out)


def _line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each key path in the YAML document to its 1-based line, for error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    index: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
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


def _env_override_paths(env: Mapping[str, str]) -> set[tuple[str, ...]]:
    return {
        tuple(key[len(ENV_PREFIX):].lower().split("__"))
        for key in env
        if key.upper().startswith(ENV_PREFIX)
    }
