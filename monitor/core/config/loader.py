"""Load a config file: YAML, `${VAR}` expansion, PAM_MONITOR_* overrides; every problem reported (report.py)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from monitor.core.config.report import Report
from monitor.core.config.root import Config, cross_check
from monitor.core.config.shard import apply_shard
from monitor.core.errors import ConfigError

ENV_PREFIX = "PAM_MONITOR_"
_VAR = re.compile(r"\$\$|\$\{(?P<body>[^}]*)\}")


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
    require_checks: bool = False,
) -> Config:
    """Read, expand, override and validate a config file; raise ConfigError listing every problem.

    `path` None means no file: the built-in defaults plus environment overrides.
    `environ` (default os.environ) is where `${VAR}` references are looked up; PAM_MONITOR_* overrides are
    always read from the process environment by pydantic-settings.
    `listen` (from --listen) wins over both. `shard` (i, n) keeps only the checks that shard i of n runs
    (monitor.core.config.shard). `require_checks` makes a file without any check a problem (the CLI's verbs).
    Every problem is reported at once: the cross-section rules run on the raw document when the models do not
    validate.
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
            raw = _parse_yaml(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark is not None else label
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError([f"{label}: the top level must be a mapping of keys (service:, targets:, checks:, ...)"])
    expanded_paths: set[tuple[str | int, ...]] = set()
    failed: list[tuple[tuple[str | int, ...], str]] = []
    expanded = _expand(raw, (), env, failed, expanded_paths)
    if listen is not None:
        expanded = {**expanded, "listen": listen}
    report = Report(label, text, expanded=expanded_paths, env_vars=_env_override_vars(os.environ),
                    overrides={("listen",): "from --listen"} if listen is not None else None)
    for loc, message in failed:
        report.add(loc, message)
    merged = _with_env_overrides(expanded)
    report.learn_names(merged)
    if require_checks and not merged.get("checks"):
        report.add(("checks",), NO_CHECKS, line=False)
    try:
        config: Config = _Settings(**expanded)
    except ValidationError as exc:
        report.add_validation(exc)
        report.add_raw_cross(merged)
    else:
        report.add_cross(cross_check(config))
    if report.problems:
        raise ConfigError(report.problems)
    if shard is not None:
        config = apply_shard(config, *shard)
    return config


def _parse_yaml(text: str) -> Any:
    """The document, by libyaml when PyYAML has it (several times faster, far less garbage for a big file).

    A file libyaml rejects is parsed again by the pure-Python parser, whose error messages the docs quote.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.load(text, Loader=fast)  # noqa: S506 (CSafeLoader is the safe loader)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


NO_CHECKS = (
    "the file has no checks, so there is nothing to watch; add a checks: list "
    "(start from examples/pam-monitor.yaml, or write one with pam-monitor discover --openapi URL)"
)


# ---------------------------------------------------------------------------------------------- ${VAR}


def _expand(
    value: Any, path: tuple[str | int, ...], env: Mapping[str, str], failed: list[tuple[tuple[str | int, ...], str]],
    expanded: set[tuple[str | int, ...]],
) -> Any:
    if isinstance(value, str):
        return _expand_str(value, path, env, failed, expanded)
    if isinstance(value, list):
        return [_expand(v, (*path, i), env, failed, expanded) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, (*path, str(k)), env, failed, expanded) for k, v in value.items()}
    return value


def _expand_str(
    text: str, path: tuple[str | int, ...], env: Mapping[str, str], failed: list[tuple[tuple[str | int, ...], str]],
    expanded: set[tuple[str | int, ...]],
) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        # Whatever a reference expands to may be a secret: problem lines never echo it.
        expanded.add(path)
        body = match.group("body")
        if body.startswith("file:"):
            file_path = Path(body[5:]).expanduser()
            try:
                return file_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                failed.append((path, f"cannot read secret file {str(file_path)!r} ({exc.strerror or exc}); "
                                     "check the path and its permissions"))
                return ""
        name, sep, default = body.partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            failed.append((path, f"${{{body}}} is not a valid reference; use ${{NAME}}, ${{NAME:-default}} "
                                 "or ${file:/path}"))
            return ""
        if name in env and env[name] != "":
            return env[name]
        if sep:
            return default
        failed.append((path, f"environment variable {name} is not set; "
                             f"export {name}=... or write ${{{name}:-default}}"))
        return ""

    return _VAR.sub(replace, text)


def _with_env_overrides(data: dict[str, Any]) -> dict[str, Any]:
    """The document as pydantic-settings sees it: PAM_MONITOR_* overrides merged over the file."""
    try:
        overrides = EnvSettingsSource(_Settings)()
    except SettingsError:
        return data  # the bad override is reported by validation
    return _deep_merge(data, overrides)


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _env_override_vars(env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Each PAM_MONITOR_* variable's path in the document (`defaults.interval`), mapped to its name."""
    return {
        tuple(key[len(ENV_PREFIX):].lower().split("__")): key.upper()
        for key in env
        if key.upper().startswith(ENV_PREFIX)
    }
