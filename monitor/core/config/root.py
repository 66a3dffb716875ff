"""The root of the configuration: defaults, HTTP settings, the Config model and the rules that span sections."""

from __future__ import annotations

import re
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from monitor.core.config.alerting import Alerts
from monitor.core.config.base import NAME_PATTERN, Duration, Strict, require_timeout_below_interval
from monitor.core.config.exposition import MetricsSettings
from monitor.core.config.identities import Identity
from monitor.core.config.kinds import CHECK_MODELS, Check, identity_refs
from monitor.core.config.links import ExternalUrl, LinkTemplate
from monitor.core.config.slo import SloGroup
from monitor.core.config.targets import Target


class Defaults(Strict):
    """Values a check takes when it does not set them itself."""

    interval: Duration = 30.0
    timeout: Duration = 5.0
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 2
    success_threshold: Annotated[int, Field(ge=1, le=100)] = 2

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> Defaults:
        require_timeout_below_interval(self.timeout, self.interval)
        return self


class HttpSettings(Strict):
    """Shared HTTP client limits."""

    max_in_flight: Annotated[int, Field(ge=1, le=1024)] = 16
    body_limit: Annotated[int, Field(ge=1024)] = 1024 * 1024
    user_agent: str = "pam-monitor"
    keep_alive: bool = Field(
        default=False,
        description="reuse connections between probes; off: every probe resolves, connects and does its TLS "
                    "handshake, so it sees a refused connect or a bad certificate as a client would",
    )


_INHERITED = ("interval", "timeout", "failure_threshold", "success_threshold")


class Config(Strict):
    """The whole configuration file after `${VAR}` expansion and environment overrides."""

    service: Annotated[str, Field(min_length=1)] = "pam-backend"
    listen: str = "127.0.0.1:9108"
    state_dir: Path = Path("./.pam-monitor")
    shutdown_timeout: Duration = 5.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    defaults: Defaults = Field(default_factory=Defaults)
    http: HttpSettings = Field(default_factory=HttpSettings)
    targets: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Target] = Field(default_factory=dict)
    identities: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Identity] = Field(
        default_factory=dict, description="signed-in users the journey, tenant_isolation and db checks act as"
    )
    checks: list[Check] = Field(default_factory=list)
    alerts: Alerts = Field(default_factory=Alerts)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    external_url: ExternalUrl | None = Field(
        default=None, description="where people reach the status page (default http://<listen>/)")
    runbook_url: LinkTemplate | None = Field(
        default=None, description="runbook link on every alert unless a target or check sets its own")
    dashboard_url: LinkTemplate | None = Field(default=None, description="dashboard link on every alert")
    slos: dict[Annotated[str, Field(pattern=NAME_PATTERN)], SloGroup] = Field(
        default_factory=dict, description="objectives over groups of checks, by name")
    # Set by apply_shard, never from the file: the file's checks that other shards run.
    _elsewhere: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @property
    def elsewhere(self) -> frozenset[str]:
        """Names of the file's checks that other shards run (empty without a shard): a check this process no longer
        runs because it moved to another shard is handed over to it, not deleted."""
        return self._elsewhere

    @model_validator(mode="before")
    @classmethod
    def _inherit_defaults(cls, data: Any) -> Any:
        """Fill each check's interval/timeout/thresholds from `defaults` before the check is validated."""
        if not isinstance(data, dict):
            return data
        raw_defaults = data.get("defaults") or {}
        if not isinstance(raw_defaults, dict | Defaults):
            return data
        try:
            defaults = raw_defaults if isinstance(raw_defaults, Defaults) else Defaults.model_validate(raw_defaults)
        except ValueError:
            defaults = Defaults()  # the defaults block itself is reported by normal validation
        checks = data.get("checks")
        if isinstance(checks, list):
            filled = []
            for check in checks:
                if isinstance(check, dict):
                    check = {k: getattr(defaults, k) for k in _INHERITED} | check
                filled.append(check)
            data = {**data, "checks": filled}
        return data

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value


def parse_listen(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:9108`); raise ValueError with the accepted form."""
    match = re.fullmatch(r"\[?([^\[\]]*?)\]?:(\d{1,5})", value.strip())
    if match is None or not (0 <= int(match.group(2)) <= 65535):
        raise ValueError(f"must be host:port such as 127.0.0.1:9108 or [::1]:9108, got {value!r}")
    return match.group(1) or "0.0.0.0", int(match.group(2))  # noqa: S104 - ":9108" means every address


@dataclass(frozen=True, slots=True)
class CheckRef:
    """What the cross-section rules need of one check; fields are None where the file did not say (or not validly)."""

    index: int
    name: str | None
    kind: str | None
    target: str | None
    needs_http: bool | None
    depends_on: tuple[str, ...] = ()
    identities: tuple[tuple[str, str], ...] = ()  # (field path within the check, identity name)


def cross_check(config: Config) -> list[tuple[str, str]]:
    """Rules that span several parts of a valid configuration; returns (field path, problem) pairs."""
    return cross_rules(
        [CheckRef(i, c.name, c.kind, c.target or None, type(c).target_type == "http", tuple(c.depends_on),
                  tuple(identity_refs(c)))
         for i, c in enumerate(config.checks)],
        {name: target.is_http for name, target in config.targets.items()},
        [(i, sink.display_name) for i, sink in enumerate(config.alerts.sinks)],
        {name: target.health_check for name, target in config.targets.items() if target.health_check},
        set(config.identities),
    ) + slo_rules(config) + database_rules(config)


def database_rules(config: Config) -> list[tuple[str, str]]:
    """A postgrest check's `database` names a defined PostgreSQL target (dsn)."""
    problems = []
    for i, check in enumerate(config.checks):
        name = getattr(check, "database", None) if check.kind == "postgrest" else None
        if name is None:
            continue
        target = config.targets.get(name)
        dsn_targets = sorted(n for n, t in config.targets.items() if not t.is_http)
        if target is None or target.is_http:
            problem = f"unknown target {name!r}" if target is None else f"target {name!r} has no dsn"
            problems.append((f"checks[{i}].database", f"{problem}; name a PostgreSQL target of the same "
                             f"database (targets with a dsn: {', '.join(dsn_targets) or 'none'})"))
    return problems


def slo_rules(config: Config) -> list[tuple[str, str]]:
    """An SLO group names existing checks, and no group takes the name of a check's own `slo` (named after it); an
    SLO's burn alerts differ in long window or severity (they are one ErrorBudgetBurn each), which carry their
    severity themselves."""
    names = {c.name for c in config.checks}
    own = {c.name for c in config.checks if c.slo is not None}
    problems = []
    for name, group in config.slos.items():
        if name in own:
            problems.append((f"slos.{name}", f"check {name!r} has its own slo, named after it; rename this group"))
        for i, check in enumerate(group.checks):
            if check not in names:
                known = ", ".join(sorted(names)) or "none"
                problems.append((f"slos.{name}.checks[{i}]", f"no check is named {check!r}; known checks: {known}"))
    override = config.alerts.rules.get("ErrorBudgetBurn")
    if override is not None and override.severity is not None:
        problems.append(("alerts.rules.ErrorBudgetBurn.severity", "an SLO's burn alerts carry their own severity: "
                         "set `severity` in the slo's `alerts` list and remove it here"))
    owned = [(f"checks[{i}].slo", c.slo) for i, c in enumerate(config.checks) if c.slo is not None]
    for where, slo in [*owned, *((f"slos.{n}", g) for n, g in config.slos.items())]:
        seen: set[tuple[float, str]] = set()
        for i, burn in enumerate(slo.alerts):
            if (burn.long, burn.severity) in seen:
                problems.append((f"{where}.alerts[{i}]", "two burn alerts with the same long window and severity "
                                 "would be one alert (labels slo, window, severity); change `long` or `severity`"))
            seen.add((burn.long, burn.severity))
    return problems


def dependencies(config: Config) -> dict[str, tuple[str, ...]]:
    """Each check's roots, sorted: the checks named in its `depends_on` plus its target's `health_check` (never
    itself). A check with no root is left out. While a root fails, the alerts of the checks that depend on it are
    held back from direct sinks."""
    edges = dependency_edges(
        [CheckRef(i, c.name, c.kind, c.target, None, tuple(c.depends_on)) for i, c in enumerate(config.checks)],
        {name: target.health_check for name, target in config.targets.items() if target.health_check},
    )
    return {name: tuple(sorted(roots)) for name, roots in edges.items() if roots}


def cross_rules(
    checks: Sequence[CheckRef], targets: Mapping[str, bool | None], sinks: Sequence[tuple[int, str]],
    health_checks: Mapping[str, str] | None = None, identities: Collection[str] | None = None,
) -> list[tuple[str, str]]:
    """The cross-section rules on plain facts, so that they also run on a file whose other parts are invalid.

    `targets` maps each defined target name to whether it is an HTTP target (None: not known, the target itself
    is invalid). `sinks` pairs each sink's index with its display name. `health_checks` maps a target to the
    check named as its `health_check`. `identities` names the defined identities (None: not known, the section
    itself is invalid).
    """
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for check in checks:
        where = f"checks[{check.index}]"
        if check.name is not None:
            if check.name in seen:
                problems.append(
                    (f"{where}.name", f"duplicate check name {check.name!r} (also checks[{seen[check.name]}]); "
                     "names must be unique")
                )
            seen.setdefault(check.name, check.index)
        if identities is not None:
            for field_path, identity in check.identities:
                if identity not in identities:
                    known = ", ".join(sorted(identities)) or "none defined"
                    problems.append((f"{where}.{field_path}", f"unknown identity {identity!r}; defined identities: "
                                     f"{known} (add it under the top-level identities:)"))
        if check.target is None:
            continue
        if check.target not in targets:
            known = ", ".join(sorted(targets)) or "none defined"
            problems.append((f"{where}.target", f"unknown target {check.target!r}; defined targets: {known}"))
            continue
        is_http = targets[check.target]
        if check.needs_http is None or is_http is None:
            continue
        if check.needs_http and not is_http:
            problems.append(
                (f"{where}.target", f"kind {check.kind} needs an HTTP target (base_url), "
                 f"but target {check.target!r} has a dsn")
            )
        if not check.needs_http and is_http:
            problems.append(
                (f"{where}.target", f"kind {check.kind} needs a PostgreSQL target (dsn), "
                 f"but target {check.target!r} has a base_url")
            )
    problems += dependency_rules(checks, health_checks or {})
    names: dict[str, int] = {}
    for i, name in sinks:
        if name in names:
            problems.append(
                (f"alerts.sinks[{i}].name", f"duplicate sink name {name!r} (also alerts.sinks[{names[name]}]); "
                 "give each sink of the same kind a distinct name")
            )
        names.setdefault(name, i)
    return problems


def dependency_edges(checks: Sequence[CheckRef], health_checks: Mapping[str, str]) -> dict[str, set[str]]:
    """Each check's roots: its own `depends_on` plus its target's `health_check` (a health check has no implicit
    root of its own)."""
    edges: dict[str, set[str]] = {}
    for check in checks:
        if check.name is None:
            continue
        roots = set(check.depends_on) - {check.name}  # a self-dependency is reported on its own
        root = health_checks.get(check.target or "")
        if root is not None and root != check.name:
            roots.add(root)
        edges[check.name] = roots
    return edges


def dependency_rules(checks: Sequence[CheckRef], health_checks: Mapping[str, str]) -> list[tuple[str, str]]:
    """`depends_on` names existing checks, never itself, and no chain of dependencies loops; a target's
    `health_check` names a check on that target."""
    problems: list[tuple[str, str]] = []
    by_name = {c.name: c for c in checks if c.name is not None}
    for target, name in sorted(health_checks.items()):
        check = by_name.get(name)
        if check is None:
            problems.append((f"targets.{target}.health_check", f"no check is named {name!r}; name one of this "
                             "target's checks (usually its /health check)"))
        elif check.target is not None and check.target != target:
            problems.append((f"targets.{target}.health_check", f"check {name!r} is on target {check.target!r}, "
                             f"not {target!r}; a health check must probe its own target"))
    for check in checks:
        for i, root in enumerate(check.depends_on):
            where = f"checks[{check.index}].depends_on[{i}]"
            if root == check.name:
                problems.append((where, "a check cannot depend on itself"))
            elif root not in by_name:
                known = ", ".join(sorted(n for n in by_name if n != check.name)[:10]) or "none"
                problems.append((where, f"no check is named {root!r}; known checks: {known}"))
    edges = dependency_edges(checks, health_checks)
    cycle = _find_cycle(edges)
    if cycle:
        # Point at a check that names a dependency itself (a health_check edge has no depends_on line).
        first = next((by_name[n] for n in cycle if by_name[n].depends_on), by_name[cycle[0]])
        problems.append((f"checks[{first.index}].depends_on", "dependencies loop: " + " -> ".join(cycle)
                         + "; a root check must not depend on the checks that depend on it"))
    return problems


def _find_cycle(edges: Mapping[str, set[str]]) -> list[str]:
    """One dependency loop as a path that ends where it starts ([] when there is none); iterative DFS."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if state.get(start):
            continue
        path: list[str] = [start]
        stack: list[list[str]] = [sorted(r for r in edges.get(start, ()) if r in edges)]
        state[start] = 1
        while stack:
            if not stack[-1]:
                state[path.pop()] = 2
                stack.pop()
                continue
            nxt = stack[-1].pop()
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(sorted(r for r in edges.get(nxt, ()) if r in edges))
    return []


def raw_facts(
    data: Any,
) -> tuple[list[CheckRef], dict[str, bool | None], list[tuple[int, str]], dict[str, str], set[str] | None]:
    """What the cross-section rules need, read from the raw document (fields that are not strings are None)."""

    def text(mapping: Any, key: str) -> str | None:
        value = mapping.get(key) if isinstance(mapping, dict) else None
        return value if isinstance(value, str) else None

    data = data if isinstance(data, dict) else {}
    raw_targets = data.get("targets")
    targets: dict[str, bool | None] = {}
    health_checks: dict[str, str] = {}
    if isinstance(raw_targets, dict):
        for name, target in raw_targets.items():
            if text(target, "health_check"):
                health_checks[str(name)] = str(text(target, "health_check"))
            has_url = isinstance(target, dict) and target.get("base_url") is not None
            has_dsn = isinstance(target, dict) and target.get("dsn") is not None
            targets[str(name)] = has_url if has_url != has_dsn else None
    checks: list[CheckRef] = []
    raw_checks = data.get("checks")
    for i, check in enumerate(raw_checks if isinstance(raw_checks, list) else []):
        kind = text(check, "kind")
        target = text(check, "target") if isinstance(raw_targets, dict | None) else None
        raw_deps = check.get("depends_on") if isinstance(check, dict) else None
        deps = tuple(d for d in raw_deps if isinstance(d, str)) if isinstance(raw_deps, list) else ()
        refs = [("identity", text(check, "identity")),
                ("synthesize.identity", text(check.get("synthesize") if isinstance(check, dict) else None, "identity"))]
        checks.append(CheckRef(i, text(check, "name"), kind, target, _needs_http().get(kind or ""), deps,
                               tuple((where, name) for where, name in refs if name is not None)))
    alerts = data.get("alerts")
    raw_sinks = alerts.get("sinks") if isinstance(alerts, dict) else None
    sinks: list[tuple[int, str]] = []
    for i, sink in enumerate(raw_sinks if isinstance(raw_sinks, list) else []):
        name = text(sink, "name") or text(sink, "kind")
        if name is not None:
            sinks.append((i, name))
    raw_identities = data.get("identities", {})
    identities = {str(name) for name in raw_identities} if isinstance(raw_identities, dict) else None
    return checks, targets, sinks, health_checks, identities


def _needs_http() -> dict[str, bool | None]:
    # None: a kind without a target (heartbeat), whose model refuses one itself.
    return {typing.get_args(m.model_fields["kind"].annotation)[0]: None if m.target_type == "none"
            else m.target_type == "http" for m in CHECK_MODELS}
