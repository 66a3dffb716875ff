"""What an alert instance is called and what it carries: its key, its labels and its annotations."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from monitor.core.config import Config
from monitor.core.results import Result

ANNOTATION_LIMIT = 1000
_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")


def alert_key(alertname: str, check: str, table: str = "", step: str = "") -> str:
    """The identity of one alert instance: alertname/check[/step=<step>][/table] (check, step and table names hold
    no '/', and table names no '=')."""
    key = f"{alertname}/{check}/step={step}" if step else f"{alertname}/{check}"
    return f"{key}/{table}" if table else key


def identity_labels(
    config: Config, check: Any, alertname: str, severity: str, extra: Mapping[str, str]
) -> dict[str, str]:
    """External labels, then the check's labels, then the built-in identity labels (which win): alertname, check,
    kind, severity, service, target, and `extra` (the engine's `depends_on`)."""
    labels: dict[str, str] = {}
    for more in (config.alerts.external_labels, check.labels):
        for name, value in more.items():
            labels[label_name(name)] = str(value)
    labels.update(
        alertname=alertname, check=check.name, kind=check.kind, severity=severity, service=config.service,
        target=check.target,
    )
    labels.update(extra)
    return labels


def daemon_labels(config: Config, alertname: str, severity: str) -> dict[str, str]:
    """The labels of a daemon-level alert (MonitorWatchdog, MonitorSaturated): external labels, alertname,
    severity and service; no check (identical on every replica of a service, so they dedupe)."""
    labels = {label_name(k): str(v) for k, v in config.alerts.external_labels.items()}
    labels.update(alertname=alertname, severity=severity, service=config.service)
    return labels


def requests_of(check: Any, step: str = "") -> str:
    """What a check asks, as people read it: `GET /api/v1/users/{user_id}/settings` (its path as configured, never
    with values filled in); a journey step's own request, prefixed with the step; a voice check's health and
    synthesis requests; "" for a check with no HTTP path (db, postgrest)."""
    if step:
        steps = getattr(check, "steps", None) or ()
        found = next((s for s in steps if getattr(s, "name", None) == step), None)
        line = _request_line(found) if found is not None else ""
        return f"step {step}: {line}" if line else f"step {step}"
    parts = [_request_line(check)]
    synthesize = getattr(check, "synthesize", None)
    if synthesize is not None:
        parts.append(_request_line(synthesize))
    return ", ".join(p for p in parts if p)


def _request_line(spec: Any) -> str:
    path = getattr(spec, "path", None)
    if not isinstance(path, str):
        return ""
    return f"{getattr(spec, 'method', 'GET')} {path}"


def name_requests(summary: str, check: Any, step: str = "") -> str:
    """An alert summary that names the check's method and path (and step): `GET /health: <sentence>`; left as it
    is when the sentence already names a request (`GET /...`) and its step."""
    where = requests_of(check, step)
    if not where:
        return summary
    names_request = _REQUEST.search(summary) is not None
    names_step = not step or step in summary
    if names_request and names_step:
        return summary
    if names_request:
        where = f"step {step}"
    return f"{where}: {summary}"[:ANNOTATION_LIMIT]


_REQUEST = re.compile(r"\b(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) /")


def build_annotations(result: Result, runbook: str, table: str = "", step: str = "",
                      check: Any = None) -> dict[str, str]:
    """Summary (the result sentence, naming the check's method, path and step when `check` is given), observed
    values and a runbook hint."""
    notes = {
        "summary": (result.message if check is None else name_requests(result.message, check, step))[
            :ANNOTATION_LIMIT],
        "description": f"{result.check} ({result.kind}): " + (f"step {step}, " if step else "")
        + f"outcome {result.outcome.value}"
        + (f", HTTP {result.status_code}" if result.status_code is not None else "")
        + f", {result.duration_s:.3f} s" + (f"; table {table}" if table else ""),
        "outcome": result.outcome.value,
        "duration_s": f"{result.duration_s:.3f}",
        "runbook": runbook,
    }
    if result.status_code is not None:
        notes["status_code"] = str(result.status_code)
    if result.details:
        notes["observed"] = compact(result.details)
    return notes


def label_name(name: str) -> str:
    """A valid Prometheus label name made from any string."""
    clean = _LABEL_NAME.sub("_", name)
    return clean if clean and not clean[0].isdigit() else f"_{clean}"


def compact(details: Mapping[str, Any]) -> str:
    """Observed values as compact JSON, cut to the annotation limit."""
    text = json.dumps(dict(details), default=str, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= ANNOTATION_LIMIT else text[: ANNOTATION_LIMIT - 3] + "..."
