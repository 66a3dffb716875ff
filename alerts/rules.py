"""The built-in alert rules of DESIGN §4, one record each: which results are bad or good for which alert, with labels.

Adding a rule is one `Rule` record in `RULES` plus its name in the `AlertName` literal (monitor/core/config/base.py);
which check kinds raise it is declared on the probes side (`rules_by_kind`, handed to the engine).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from alerts.model import CheckMemory, Observation, Signal
from monitor.core.config import AlertName, Config
from monitor.core.results import Outcome, Result

Severity = Literal["critical", "warning", "info", "none"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info", "none")
_GOOD = frozenset({Outcome.OK, Outcome.SLOW})
_DB_DOWN = frozenset(
    {Outcome.CONNECTION_ERROR, Outcome.TIMEOUT, Outcome.DNS_ERROR, Outcome.TLS_ERROR, Outcome.DB_ERROR}
)
_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")
_ANNOTATION_LIMIT = 1000


class Facts(NamedTuple):
    """What a rule looks at: one result of one check, what the rules remember about the check, and the keys of its
    active alert instances. (A named tuple: one is built per result, and a tuple is the cheapest to build.)"""

    config: Config
    check: Any
    result: Result
    memory: CheckMemory
    known: Collection[str]


Evaluate = Callable[[str, Facts], list[Observation]]
"""`evaluate(alertname, facts)`: every instance of the alert the result says something about."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One built-in alert: its name, default severity, runbook hint and how a result is judged."""

    name: AlertName
    severity: Severity
    runbook: str
    evaluate: Evaluate


def alert_key(alertname: str, check: str, table: str = "") -> str:
    """The identity of one alert instance: alertname/check[/table] (check and table names hold no '/')."""
    return f"{alertname}/{check}/{table}" if table else f"{alertname}/{check}"


def severity_of(config: Config, alertname: str) -> str:
    """The configured severity of an alertname (DESIGN default unless alerts.rules overrides it)."""
    override = config.alerts.rules.get(alertname)  # type: ignore[call-overload]
    if override is not None and override.severity is not None:
        return str(override.severity)
    return RULES[alertname].severity


def rules_for(config: Config, check: Any, rules_by_kind: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The alertnames that apply to a check: those of its kind, minus rules disabled globally or on the check."""
    out = []
    for name in rules_by_kind.get(check.kind, ()):
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


def daemon_labels(config: Config, alertname: str) -> dict[str, str]:
    """The labels of a daemon-level alert (MonitorWatchdog, MonitorSaturated): external labels, alertname, severity
    and service; no check (identical on every replica of a service, so they dedupe)."""
    labels = {_label_name(k): str(v) for k, v in config.alerts.external_labels.items()}
    labels.update(alertname=alertname, severity=severity_of(config, alertname), service=config.service)
    return labels


def watchdog_labels(config: Config) -> dict[str, str]:
    """The MonitorWatchdog's labels: one per service (identical on every replica, so they dedupe)."""
    return daemon_labels(config, "MonitorWatchdog")


def evaluate(
    config: Config, check: Any, result: Result, memory: CheckMemory, known: Collection[str] = (),
    *, rules: Collection[str],
) -> list[Observation]:
    """Every alert instance this result says something about; instances it says nothing about are left out.

    `rules` is `rules_for(config, check, rules_by_kind)` (the engine works it out once per config, not per result).
    `known` holds the keys of this check's alert instances that are active, so a table that stopped being
    reported missing on a passing run is seen as GOOD.
    """
    facts = Facts(config, check, result, memory, known)
    out: list[Observation] = []
    for alertname in rules:
        out.extend(RULES[alertname].evaluate(alertname, facts))
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
        "runbook": RULES[alertname].runbook,
    }
    if result.status_code is not None:
        notes["status_code"] = str(result.status_code)
    if result.details:
        notes["observed"] = _compact(result.details)
    return notes


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


# ---------------------------------------------------------------------------------------------- how rules judge

SignalFn = Callable[[Any, Result], Signal | None]
"""`(check, result) -> BAD, GOOD or None` (the result says nothing about this alert)."""


def _one_per_check(signal_of: SignalFn, extra_labels: Callable[[Facts], Mapping[str, str]] | None = None) -> Evaluate:
    """An alert with one instance per check, judged by `signal_of`."""

    def evaluate(alertname: str, facts: Facts) -> list[Observation]:
        check = facts.check
        signal = signal_of(check, facts.result)
        if signal is None:
            return []
        key = alert_key(alertname, check.name)
        if signal is Signal.GOOD:
            return [Observation(key, alertname, check.name, signal)]
        labels = base_labels(facts.config, check, alertname)
        if extra_labels is not None:
            labels.update(extra_labels(facts))
        return [Observation(key, alertname, check.name, signal, labels, build_annotations(alertname, facts.result))]

    return evaluate


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


def _from_to(facts: Facts) -> dict[str, str]:
    """The `from` and `to` labels of a ContractRegression."""
    check, result, memory = facts.check, facts.result, facts.memory
    to_http = result.status_code is not None
    to = str(result.status_code) if to_http else result.outcome.value
    if to_http and memory.last_good_status is not None:
        return {"from": str(memory.last_good_status), "to": to}
    if memory.last_good_outcome is not None and not to_http:
        return {"from": memory.last_good_outcome, "to": to}
    if to_http and memory.last_good_outcome is None:
        # Never seen good since the state began: the `from` side is what the check expects.
        expect = getattr(check, "expect", None)
        statuses = getattr(expect, "status", None)
        if statuses:
            return {"from": "|".join(str(s) for s in statuses), "to": to}
    return {"from": memory.last_good_outcome or Outcome.OK.value, "to": result.outcome.value}


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


def _tables(alertname: str, facts: Facts) -> list[Observation]:
    """One instance per missing table; a table listed present, or known but not named on a passing run, is GOOD."""
    config, check, result = facts.config, facts.check, facts.result
    out: list[Observation] = []
    for table in missing_tables(result):
        labels = base_labels(config, check, alertname)
        labels["table"] = table
        out.append(
            Observation(alert_key(alertname, check.name, table), alertname, check.name, Signal.BAD,
                        labels, build_annotations(alertname, result, table))
        )
    prefix = alert_key(alertname, check.name, "")
    seen = {o.key for o in out}
    for name, present in result.tables.items():
        key = alert_key(alertname, check.name, name)
        if present and key not in seen:
            out.append(Observation(key, alertname, check.name, Signal.GOOD))
            seen.add(key)
    if result.outcome in _GOOD:
        for key in facts.known:
            if key.startswith(prefix + "/") and key not in seen:
                out.append(Observation(key, alertname, check.name, Signal.GOOD))
    return out


def _not_from_results(alertname: str, facts: Facts) -> list[Observation]:
    """Daemon-level alerts are not judged from results: the engine sends the watchdog while results keep
    arriving, and judges MonitorSaturated from the skipped-run count (alerts/saturated.py)."""
    return []


RULES: Mapping[str, Rule] = {rule.name: rule for rule in (
    Rule("ContractRegression", "critical",
         "The endpoint used to answer as expected and now fails with a server error: check the latest deploy and "
         "the backend logs for this route, then roll back if it started with a release.",
         _one_per_check(_contract_regression, _from_to)),
    Rule("AuthBypass", "critical",
         "A request without valid credentials got past the auth layer: treat as a security incident, check the "
         "route's auth dependency and JWT verification (alg, signature, expiry), consider disabling it.",
         _one_per_check(_auth_bypass)),
    Rule("TableMissing", "critical",
         "A required table is absent: check recent migrations (a dropped or renamed table) and the PostgREST "
         "schema cache (NOTIFY pgrst, 'reload schema').",
         _tables),
    Rule("SchemaDrift", "warning",
         "A required column is missing or row-level security is off: compare the live schema with the "
         "migrations; re-enable RLS (ALTER TABLE ... ENABLE ROW LEVEL SECURITY) at once.",
         _one_per_check(_schema_drift)),
    Rule("EndpointDown", "critical",
         "The endpoint cannot be reached or answers 5xx: check the process, its host, DNS, TLS and the load "
         "balancer.",
         _one_per_check(_endpoint_down)),
    Rule("VoiceDegraded", "warning",
         "The voice subsystem is degraded: check the TTS provider (Edge-TTS), its fallbacks and the voice health "
         "endpoint's details.",
         _one_per_check(_voice_degraded)),
    Rule("DatabaseDown", "critical",
         "The database round trip fails: check PostgreSQL availability, connection limits, credentials and "
         "network.",
         _one_per_check(_database_down)),
    Rule("MonitorSaturated", "warning",
         "pam-monitor skips runs because it cannot keep up (CPU, event-loop lag, its own request slots or a "
         "target's max_rate): the checks it still reports are honest, but fewer. Give it more CPU, fewer checks, "
         "longer intervals or more http.max_in_flight; see pam_monitor_scheduler_skipped_runs_total and "
         "pam_monitor_event_loop_lag_seconds.",
         _not_from_results),
    Rule("MonitorWatchdog", "none",
         "Always firing while pam-monitor runs; route it to a dead man's switch. If it stops, pam-monitor itself "
         "is down.",
         _not_from_results),
)}
"""Every built-in rule by alertname; a test holds it equal to the AlertName literal."""

ALERTNAMES: tuple[str, ...] = tuple(RULES)


def _label_name(name: str) -> str:
    clean = _LABEL_NAME.sub("_", name)
    return clean if clean and not clean[0].isdigit() else f"_{clean}"


def _compact(details: Mapping[str, Any]) -> str:
    text = json.dumps(dict(details), default=str, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= _ANNOTATION_LIMIT else text[: _ANNOTATION_LIMIT - 3] + "..."
