"""The built-in alert rules of DESIGN §4: which results are bad or good for which alert, with labels."""

from __future__ import annotations

import enum
import json
import re
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.core.config import AlertName, Config
from monitor.core.results import Outcome, Result

ALERTNAMES: tuple[AlertName, ...] = typing.get_args(AlertName)
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info", "none")
DEFAULT_SEVERITY: Mapping[str, str] = {
    "ContractRegression": "critical",
    "AuthBypass": "critical",
    "TableMissing": "critical",
    "SchemaDrift": "warning",
    "EndpointDown": "critical",
    "VoiceDegraded": "warning",
    "DatabaseDown": "critical",
    "MonitorWatchdog": "none",
}
RUNBOOKS: Mapping[str, str] = {
    "ContractRegression": "The endpoint used to answer as expected and now fails with a server error: check the "
    "latest deploy and the backend logs for this route, then roll back if it started with a release.",
    "AuthBypass": "A request without valid credentials got past the auth layer: treat as a security incident, "
    "check the route's auth dependency and JWT verification (alg, signature, expiry), consider disabling it.",
    "TableMissing": "A required table is absent: check recent migrations (a dropped or renamed table) and the "
    "PostgREST schema cache (NOTIFY pgrst, 'reload schema').",
    "SchemaDrift": "A required column is missing or row-level security is off: compare the live schema with the "
    "migrations; re-enable RLS (ALTER TABLE ... ENABLE ROW LEVEL SECURITY) at once.",
    "EndpointDown": "The endpoint cannot be reached or answers 5xx: check the process, its host, DNS, TLS and "
    "the load balancer.",
    "VoiceDegraded": "The voice subsystem is degraded: check the TTS provider (Edge-TTS), its fallbacks and the "
    "voice health endpoint's details.",
    "DatabaseDown": "The database round trip fails: check PostgreSQL availability, connection limits, "
    "credentials and network.",
    "MonitorWatchdog": "Always firing while pam-monitor runs; route it to a dead man's switch. If it stops, "
    "pam-monitor itself is down.",
}

_CHECK_RULES: Mapping[str, tuple[str, ...]] = {
    "http": ("ContractRegression", "TableMissing", "EndpointDown"),
    "auth_contract": ("ContractRegression", "AuthBypass", "TableMissing", "EndpointDown"),
    "voice": ("ContractRegression", "TableMissing", "EndpointDown", "VoiceDegraded"),
    "postgrest": ("ContractRegression", "TableMissing", "EndpointDown"),
    "db": ("TableMissing", "SchemaDrift", "DatabaseDown"),
}
_GOOD = frozenset({Outcome.OK, Outcome.SLOW})
_DB_DOWN = frozenset(
    {Outcome.CONNECTION_ERROR, Outcome.TIMEOUT, Outcome.DNS_ERROR, Outcome.TLS_ERROR, Outcome.DB_ERROR}
)
_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")
_ANNOTATION_LIMIT = 1000


class Signal(enum.Enum):
    """What one result says about one alert: the condition holds (BAD) or it does not (GOOD)."""

    BAD = "bad"
    GOOD = "good"


@dataclass(frozen=True, slots=True)
class Observation:
    """One result's verdict for one alert instance; labels and annotations matter when BAD."""

    key: str
    alertname: str
    check: str
    signal: Signal
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckMemory:
    """What the rules remember about a check between results: its last good answer (the `from` label)."""

    last_good_status: int | None = None
    last_good_outcome: str | None = None


def alert_key(alertname: str, check: str, table: str = "") -> str:
    """The identity of one alert instance: alertname/check[/table] (check and table names hold no '/')."""
    return f"{alertname}/{check}/{table}" if table else f"{alertname}/{check}"


def severity_of(config: Config, alertname: str) -> str:
    """The configured severity of an alertname (DESIGN default unless alerts.rules overrides it)."""
    override = config.alerts.rules.get(alertname)  # type: ignore[call-overload]
    if override is not None and override.severity is not None:
        return str(override.severity)
    return DEFAULT_SEVERITY[alertname]


def rules_for(config: Config, check: Any) -> tuple[str, ...]:
    """The alertnames that apply to a check: by kind, minus rules disabled globally or on the check."""
    out = []
    for name in _CHECK_RULES.get(check.kind, ()):
        override = config.alerts.rules.get(name)  # type: ignore[call-overload]
        if override is not None and not override.enabled:
            continue
        if name in check.disable_alerts:
            continue
        out.append(name)
    return tuple(out)


def remember(memory: CheckMemory, result: Result) -> CheckMemory:
    """Update the memory with a result: a good one becomes the `from` side of a later regression."""
    if result.outcome in _GOOD:
        return CheckMemory(last_good_status=result.status_code, last_good_outcome=result.outcome.value)
    return memory


def base_labels(config: Config, check: Any, alertname: str) -> dict[str, str]:
    """External labels, then the check's labels, then the built-in identity labels (which win)."""
    labels: dict[str, str] = {}
    for extra in (config.alerts.external_labels, check.labels):
        for name, value in extra.items():
            labels[_label_name(name)] = str(value)
    labels.update(
        alertname=alertname, check=check.name, kind=check.kind,
        severity=severity_of(config, alertname), service=config.service,
    )
    return labels


def watchdog_labels(config: Config) -> dict[str, str]:
    """The MonitorWatchdog's labels: one per service (identical on every replica, so they dedupe)."""
    labels = {_label_name(k): str(v) for k, v in config.alerts.external_labels.items()}
    labels.update(alertname="MonitorWatchdog", severity=severity_of(config, "MonitorWatchdog"),
                  service=config.service)
    return labels


def evaluate(
    config: Config, check: Any, result: Result, memory: CheckMemory, known: Collection[str] = (),
    *, rules: Collection[str] | None = None,
) -> list[Observation]:
    """Every alert instance this result says something about; instances it says nothing about are left out.

    `known` holds the keys of this check's alert instances that are active, so a table that stopped being
    reported missing on a passing run is seen as GOOD. `rules` is `rules_for(config, check)` when the caller
    has it already (the engine computes it once per config, not once per result).
    """
    out: list[Observation] = []
    for alertname in rules_for(config, check) if rules is None else rules:
        if alertname == "TableMissing":
            out.extend(_tables(config, check, result, known))
            continue
        signal = _RULES[alertname](check, result)
        if signal is None:
            continue
        key = alert_key(alertname, check.name)
        if signal is Signal.GOOD:
            out.append(Observation(key, alertname, check.name, signal))
            continue
        labels = base_labels(config, check, alertname)
        if alertname == "ContractRegression":
            labels["from"], labels["to"] = _from_to(check, result, memory)
        out.append(Observation(key, alertname, check.name, signal, labels, build_annotations(alertname, result)))
    return out


def build_annotations(alertname: str, result: Result, table: str = "") -> dict[str, str]:
    """Summary (the result sentence), observed values and a runbook hint."""
    notes = {
        "summary": result.message[:_ANNOTATION_LIMIT],
        "description": f"{result.check} ({result.kind}): outcome {result.outcome.value}"
        + (f", HTTP {result.status_code}" if result.status_code is not None else "")
        + f", {result.duration_s:.3f} s" + (f"; table {table}" if table else ""),
        "outcome": result.outcome.value,
        "duration_s": f"{result.duration_s:.3f}",
        "runbook": RUNBOOKS[alertname],
    }
    if result.status_code is not None:
        notes["status_code"] = str(result.status_code)
    if result.details:
        notes["observed"] = _compact(result.details)
    return notes


# ---------------------------------------------------------------------------------------------- one per rule


def _answered(result: Result) -> bool:
    return result.outcome in _GOOD or result.status_code is not None


def _is_5xx(result: Result) -> bool:
    return result.status_code is not None and 500 <= result.status_code <= 599


def _contract_regression(check: Any, result: Result) -> Signal | None:
    if result.outcome is Outcome.SERVER_ERROR or (result.outcome is Outcome.TABLE_MISSING and _is_5xx(result)):
        return Signal.BAD
    if result.outcome in _GOOD or (result.status_code is not None and not _is_5xx(result)):
        return Signal.GOOD
    return None


def _auth_bypass(check: Any, result: Result) -> Signal | None:
    if result.outcome is Outcome.AUTH_BYPASS:
        return Signal.BAD
    return Signal.GOOD if _answered(result) else None


def _schema_drift(check: Any, result: Result) -> Signal | None:
    if result.outcome in (Outcome.COLUMN_MISSING, Outcome.RLS_DISABLED):
        return Signal.BAD
    return Signal.GOOD if result.outcome in _GOOD else None


def _endpoint_down(check: Any, result: Result) -> Signal | None:
    if result.outcome.unreachable or (check.kind == "http" and result.outcome is Outcome.SERVER_ERROR):
        return Signal.BAD
    if result.outcome in _GOOD or (result.status_code is not None and not (check.kind == "http" and _is_5xx(result))):
        return Signal.GOOD
    return None


def _voice_degraded(check: Any, result: Result) -> Signal | None:
    return Signal.GOOD if result.outcome is Outcome.OK else Signal.BAD


def _database_down(check: Any, result: Result) -> Signal | None:
    if result.outcome in _DB_DOWN:
        return Signal.BAD
    # Any other answer (even a missing table or a permission error) proves the round trip works.
    return None if result.outcome is Outcome.INTERNAL_ERROR else Signal.GOOD


_RULES = {
    "ContractRegression": _contract_regression,
    "AuthBypass": _auth_bypass,
    "SchemaDrift": _schema_drift,
    "EndpointDown": _endpoint_down,
    "VoiceDegraded": _voice_degraded,
    "DatabaseDown": _database_down,
}


def _from_to(check: Any, result: Result, memory: CheckMemory) -> tuple[str, str]:
    to_http = result.status_code is not None
    to = str(result.status_code) if to_http else result.outcome.value
    if to_http and memory.last_good_status is not None:
        return str(memory.last_good_status), to
    if memory.last_good_outcome is not None and not to_http:
        return memory.last_good_outcome, to
    if to_http and memory.last_good_outcome is None:
        # Never seen good since the state began: the `from` side is what the check expects.
        expect = getattr(check, "expect", None)
        statuses = getattr(expect, "status", None)
        if statuses:
            return "|".join(str(s) for s in statuses), to
    return memory.last_good_outcome or Outcome.OK.value, result.outcome.value


def missing_tables(result: Result) -> list[str]:
    """Tables this result reports missing: `tables` entries False, details tables_missing/table."""
    names: dict[str, None] = {name: None for name, present in result.tables.items() if not present}
    listed = result.details.get("tables_missing")
    if isinstance(listed, list | tuple):
        names.update({str(t): None for t in listed})
    single = result.details.get("table")
    if isinstance(single, str) and result.outcome is Outcome.TABLE_MISSING:
        names[single] = None
    if not names and result.outcome is Outcome.TABLE_MISSING:
        names["unknown"] = None
    return list(names)


def _tables(config: Config, check: Any, result: Result, known: Collection[str]) -> list[Observation]:
    out: list[Observation] = []
    missing = missing_tables(result)
    for table in missing:
        labels = base_labels(config, check, "TableMissing")
        labels["table"] = table
        out.append(
            Observation(alert_key("TableMissing", check.name, table), "TableMissing", check.name, Signal.BAD,
                        labels, build_annotations("TableMissing", result, table))
        )
    prefix = alert_key("TableMissing", check.name, "")
    seen = {o.key for o in out}
    for name, present in result.tables.items():
        key = alert_key("TableMissing", check.name, name)
        if present and key not in seen:
            out.append(Observation(key, "TableMissing", check.name, Signal.GOOD))
            seen.add(key)
    if result.outcome in _GOOD:
        for key in known:
            if key.startswith(prefix + "/") and key not in seen:
                out.append(Observation(key, "TableMissing", check.name, Signal.GOOD))
    return out


def _label_name(name: str) -> str:
    clean = _LABEL_NAME.sub("_", name)
    return clean if clean and not clean[0].isdigit() else f"_{clean}"


def _compact(details: Mapping[str, Any]) -> str:
    text = json.dumps(dict(details), default=str, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= _ANNOTATION_LIMIT else text[: _ANNOTATION_LIMIT - 3] + "..."
