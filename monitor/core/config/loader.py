"""Load a config file: YAML, `${VAR}` expansion, PAM_MONITOR_* overrides; every problem reported (report.py)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from monitor.core.config.yamlfile import (
    MAX_FILE_BYTES,
    MAX_SECRET_FILE_BYTES,
    YamlProblem,
    read_limited,
)
from monitor.core.config.yamlfile import parse as parse_yaml
from monitor.core.errors import ConfigError
from monitor.core.secrets import dsn_passwords

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
    scope: Scope | None = None,
    lenient: bool = False,
) -> Config:
    """Read, expand, override and validate a config file; raise ConfigError listing every problem.

    `path` None means no file: the built-in defaults plus environment overrides.
    `environ` (default os.environ) is where `${VAR}` references are looked up; PAM_MONITOR_* overrides are
    always read from the process environment by pydantic-settings.
    `listen` (from --listen) wins over both. `shard` (i, n) keeps only the checks that shard i of n runs
    (monitor.core.config.shard). `require_checks` makes a file without any check a problem (the CLI's verbs).
    Every problem is reported at once: the cross-section rules run on the raw document when the models do not
    validate.

    Secrets resolve lazily: with a `scope` (the parts a verb uses), a `${VAR}` that is unset (or a `${file:...}`
    that cannot be read) outside those parts is no problem, and the Config returned holds only the parts in scope.
    `lenient` (validate) treats every such reference so: when they are the only problems, UnsetVariables is raised
    (its `problems` are the warnings, its `document` the file as read) instead of ConfigError.
    """
    env = os.environ if environ is None else environ
    label = str(path) if path is not None else "<defaults>"
    text = ""
    raw: Any = {}
    if path is not None:
        try:
            text = read_limited(Path(path), MAX_FILE_BYTES, what="config file")
        except FileNotFoundError:
            raise ConfigError([f"{label}: file not found; pass an existing file with --config"]) from None
        except UnicodeDecodeError:
            raise ConfigError([f"{label}: cannot read the file: it is not UTF-8 text"]) from None
        except ValueError as exc:
            raise ConfigError([f"{label}: {exc}; pass the YAML config file with --config"]) from None
        except OSError as exc:
            raise ConfigError([f"{label}: cannot read the file: {exc.__class__.__name__}: {exc.strerror or exc}"]) \
                from None
        try:
            raw = parse_yaml(text)
        except YamlProblem as exc:
            raise ConfigError([f"{label}:{exc.line}: {exc}" if exc.line else f"{label}: {exc}"]) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark is not None else label
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, whatever the kind
            raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError([f"{label}: the top level must be a mapping of keys (service:, targets:, checks:, ...)"])
        odd = [key for key in raw if not isinstance(key, str)]
        if odd:  # `? ` or `1:` at the top: no field is named so, and keyword arguments must be text
            raise ConfigError([f"{label}: top-level key {_short(odd[0])} is not a name; the top level takes keys "
                               "such as service:, targets:, checks:"])
    expanded_paths: set[tuple[str | int, ...]] = set()
    failed: list[tuple[tuple[str | int, ...], str]] = []
    revealed: list[str] = []
    expanded = _expand(raw, (), env, failed, (expanded_paths, revealed))
    needed = _needed(raw, scope) if scope is not None else None
    if listen is not None:
        expanded = {**expanded, "listen": listen}
    overridden = _env_override_vars(os.environ)
    # What came from the environment or a secret file is never quoted in a problem line (report.py).
    revealed += [os.environ[name] for name in overridden.values() if name in os.environ]
    revealed += _url_passwords(expanded)
    report = Report(label, text, expanded=expanded_paths, env_vars=overridden, hidden=revealed,
                    overrides={("listen",): "from --listen"} if listen is not None else None)
    deferred: list[str] = []
    for loc, message in failed:
        if _DEFERRABLE in message and (lenient or (needed is not None and not needed(loc))):
            report.defer(loc)  # what validation says of the blank it left is no problem either
            line = next((report.lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in report.lines), None)
            where = f"{report.label}:{line}" if line is not None else report.label
            deferred.append(f"{where}: {report.path(loc)}: {message.replace(_DEFERRABLE, '')}")
        else:
            report.add(loc, message.replace(_DEFERRABLE, ""))
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
    if deferred and lenient:
        raise UnsetVariables(deferred, merged)
    if deferred and needed is not None:
        # The parts out of scope held the unresolved references: the Config is made of the parts in scope.
        try:
            config = _Settings(**_pruned(expanded, needed))
        except ValidationError as exc:  # in-scope parts validated above: only a reference across scopes gets here
            raise ConfigError([f"{label}: {' '.join(str(exc).split())[:500]}"]) from None
    if shard is not None:
        config = apply_shard(config, *shard)
    return config


NO_CHECKS = (
    "the file has no checks, so there is nothing to watch; add a checks: list "
    "(write a starter with pam-monitor init, or pam-monitor init --openapi URL for your API's checks)"
)

_DEFERRABLE = "\x00"
"""Marks a failed reference that only matters when its part of the file is used (an unset variable, an unreadable
secret file); stripped before the message is shown."""


class UnsetVariables(ConfigError):
    """The file is valid but for references the environment does not resolve (validate --strict fails on them).

    `problems` holds one line each; `document` the file as read (with PAM_MONITOR_* overrides), for counting."""

    def __init__(self, problems: list[str], document: dict[str, Any]) -> None:
        super().__init__(problems)
        self.document = document


@dataclass(frozen=True, slots=True)
class Scope:
    """The parts of a config file a verb uses, so that only their `${VAR}`s must resolve.

    `checks`: the names of the checks run (None: every check); with them come the checks they depend on (and
    their targets' health checks), the targets and identities they name. `sinks`: the display name (`name`, else
    `kind`) of the one sink used, "" for none, None for every sink; a sink name that matches nothing keeps every
    sink, so that the verb can say which names there are.
    """

    checks: frozenset[str] | None = None
    sinks: str | None = None


def _needed(raw: dict[str, Any], scope: Scope) -> Callable[[tuple[str | int, ...]], bool]:
    """Whether a path of the document is in `scope` (everything outside checks, targets, identities and
    alerts.sinks always is)."""
    listed = raw.get("checks")
    checks: list[dict[str, Any]] = [c if isinstance(c, dict) else {} for c in listed] if isinstance(listed, list) \
        else []
    targets: dict[str, Any] = raw["targets"] if isinstance(raw.get("targets"), dict) else {}
    identities: dict[str, Any] = raw["identities"] if isinstance(raw.get("identities"), dict) else {}
    by_name = {c["name"]: i for i, c in enumerate(checks) if isinstance(c.get("name"), str)}
    if scope.checks is None:
        kept_checks = set(range(len(checks)))
    else:  # a name that matches nothing keeps nothing: the verb says which names are unknown
        kept_checks = {by_name[n] for n in scope.checks if n in by_name}
    health = {t: spec.get("health_check") for t, spec in targets.items() if isinstance(spec, dict)}
    todo = list(kept_checks)
    while todo:  # the closure over depends_on and the target's health check
        check = checks[todo.pop()]
        depends = check.get("depends_on")
        roots = [*(depends if isinstance(depends, list) else []), health.get(str(check.get("target")))]
        for root in roots:
            if isinstance(root, str) and root in by_name and by_name[root] not in kept_checks:
                kept_checks.add(by_name[root])
                todo.append(by_name[root])
    words = {value for i in kept_checks for value in _strings(checks[i])}
    kept_identities = {name for name in identities if name in words}
    words |= {value for name in kept_identities for value in _strings(identities[name])}
    kept_targets = {name for name in targets if name in words}
    sinks = (raw.get("alerts") or {}).get("sinks") if isinstance(raw.get("alerts"), dict) else None
    sinks = sinks if isinstance(sinks, list) else []
    names = [(s.get("name") or s.get("kind")) if isinstance(s, dict) else None for s in sinks]
    if scope.sinks is None or (scope.sinks and scope.sinks not in names):
        kept_sinks = set(range(len(sinks)))
    else:
        kept_sinks = {i for i, name in enumerate(names) if name == scope.sinks}

    def needed(path: tuple[str | int, ...]) -> bool:
        section = path[0] if path else None
        if section == "checks" and len(path) > 1:
            return path[1] in kept_checks
        if section == "targets" and len(path) > 1:
            return path[1] in kept_targets
        if section == "identities" and len(path) > 1:
            return path[1] in kept_identities
        if path[:2] == ("alerts", "sinks") and len(path) > 2:
            return path[2] in kept_sinks
        return True

    return needed


def _strings(value: Any) -> set[str]:
    """Every string anywhere in a value (a check's or an identity's: where the names of others appear)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _pruned(document: dict[str, Any], needed: Callable[[tuple[str | int, ...]], bool]) -> dict[str, Any]:
    """The document without the checks, targets, identities and sinks out of scope."""
    out = dict(document)
    if isinstance(out.get("checks"), list):
        out["checks"] = [c for i, c in enumerate(out["checks"]) if needed(("checks", i))]
    for section in ("targets", "identities"):
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if needed((section, k))}
    alerts = out.get("alerts")
    if isinstance(alerts, dict) and isinstance(alerts.get("sinks"), list):
        kept = [sink for i, sink in enumerate(alerts["sinks"]) if needed(("alerts", "sinks", i))]
        out["alerts"] = {**alerts, "sinks": kept}
    return out


# ---------------------------------------------------------------------------------------------- ${VAR}


_Seen = tuple[set[tuple[str | int, ...]], list[str]]  # the paths that held a reference, and what they expanded to


def _expand(
    value: Any, path: tuple[str | int, ...], env: Mapping[str, str], failed: list[tuple[tuple[str | int, ...], str]],
    expanded: _Seen,
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
    expanded: _Seen,
) -> str:
    paths, revealed = expanded

    def replace(match: re.Match[str]) -> str:
        value = _reference(match, path, env, failed)
        if match.group(0) != "$$":
            # Whatever a reference expands to may be a secret: problem lines never echo it.
            paths.add(path)
            revealed.append(value)
        return value

    return _VAR.sub(replace, text)


def _reference(
    match: re.Match[str], path: tuple[str | int, ...], env: Mapping[str, str],
    failed: list[tuple[tuple[str | int, ...], str]],
) -> str:
    """What one `$$`, `${NAME}`, `${NAME:-default}` or `${file:/path}` stands for ('' after a problem)."""
    if match.group(0) == "$$":
        return "$"
    body = match.group("body")
    if body.startswith("file:"):
        file_path = Path(body[5:]).expanduser()
        try:
            return read_limited(file_path, MAX_SECRET_FILE_BYTES, what="secret file").strip()
        except UnicodeDecodeError:
            failed.append((path, f"secret file {str(file_path)!r} is not UTF-8 text; point it at the secret"))
        except ValueError as exc:
            failed.append((path, f"{str(file_path)!r}: {exc}; point it at a file holding only the secret"))
        except OSError as exc:
            failed.append((path, f"cannot read secret file {str(file_path)!r} ({exc.strerror or exc}); "
                                 f"check the path and its permissions{_DEFERRABLE}"))
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
                         f"export {name}=... or write ${{{name}:-default}}{_DEFERRABLE}"))
    return ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _url_passwords(value: Any) -> list[str]:
    """The password of every URL in the document (an Alertmanager's `http://user:pass@host`), wherever it is."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "://" in item and "@" in item:
                found.extend(dsn_passwords(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


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
