"""What one `db` run has observed (`Run`) and the results made from it: ok, a schema failure, an error."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from monitor.core.config import DbCheck
from monitor.core.results import Outcome, ProbeResult
from monitor.core.secrets import Redactor
from probes import _pg

log = structlog.get_logger("pam_monitor.probe.db")


@dataclass
class Run:
    """What one run has observed so far; whatever fails later, these go into the result."""

    loop: asyncio.AbstractEventLoop
    deadline: float
    phase: str = "connect"
    phases: dict[str, float] = field(default_factory=dict)
    tables: dict[str, bool] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    touching: str | None = None
    claims: Mapping[str, Any] | None = None  # request.jwt.claims for as_role (the identity's, else {role})
    hidden: Redactor = field(default_factory=Redactor)
    migrations: Any = None  # the migrations comparison (probes/_db_migrations.Comparison) once made

    def remaining(self) -> float:
        left = self.deadline - self.loop.time()
        if left <= 0:
            raise TimeoutError
        return left



def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _phase_summary(phases: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {_ms(value)}" for name, value in phases.items())


def ok(names: list[str], run: Run, note: str | None) -> ProbeResult:
    version = str(run.details.get("server_version", "?")).split(" ")[0]
    parts = [f"PostgreSQL {version} answered"]
    if names:
        parts.append(f"{len(names)}/{len(names)} required tables present")
    if run.details.get("canary") == "ok":
        parts.append("canary written and read back")
    if "readable_as_role" in run.details:
        parts.append(f"{run.details['readable_as_role']}/{len(names)} readable as role {run.details['as_role']}")
    if note:
        parts.append(note)
    message = "; ".join(parts) + f" ({_phase_summary(run.phases)})"
    return ProbeResult(Outcome.OK, message, details=dict(run.details), tables=dict(run.tables),
                       phases=dict(run.phases))


def schema_failure(
    names: list[str], missing_tables: list[str], missing_columns: list[str], rls_off: list[str], run: Run
) -> ProbeResult:
    details = dict(run.details)
    if missing_tables:
        details["missing_tables"] = missing_tables
    if missing_columns:
        details["missing_columns"] = missing_columns
    if rls_off:
        details["rls_disabled"] = rls_off
    problems: list[str] = []
    if missing_tables:
        problems.append(
            f"required table{'s' if len(missing_tables) > 1 else ''} missing: {', '.join(missing_tables)} "
            f"({len(names) - len(missing_tables)} of {len(names)} present)"
        )
    if missing_columns:
        problems.append(f"required column{'s' if len(missing_columns) > 1 else ''} missing: "
                        f"{', '.join(missing_columns)}")
    if rls_off:
        problems.append(f"row-level security is off on: {', '.join(rls_off)}")
    # Precedence: a missing table explains a missing column, and both outrank a policy setting.
    outcome = (Outcome.TABLE_MISSING if missing_tables
               else Outcome.COLUMN_MISSING if missing_columns else Outcome.RLS_DISABLED)
    return ProbeResult(outcome, "; ".join(problems), details=details, tables=dict(run.tables),
                       phases=dict(run.phases))


def failure(
    check: DbCheck,
    run: Run,
    exc: BaseException,
    classified: _pg.ErrorClass,
    hidden: Redactor,
    elapsed: float,
) -> ProbeResult:
    text = _pg.error_text(exc, hidden) if not isinstance(exc, TimeoutError) else ""
    details = dict(run.details)
    details.update(phase=run.phase, sqlstate=classified.sqlstate)
    if text:
        details["error"] = text
    tables = dict(run.tables)
    outcome = classified.outcome
    after = f"after {elapsed:.2f} s"
    if outcome is Outcome.TIMEOUT:
        what = text or f"no answer within the {check.timeout:g} s timeout"
        message = f"timed out during {run.phase} {after}: {what}"
    elif outcome is Outcome.TABLE_MISSING:
        missing = run.touching or _pg.relation_in(text) or "?"
        if missing in tables:
            tables[missing] = False
        details["missing_tables"] = [missing]
        message = f"required table missing: {missing} ({text}, SQLSTATE 42P01, during {run.phase})"
    elif outcome in (Outcome.PERMISSION_DENIED, Outcome.POLICY_ERROR):
        table = run.touching or _pg.denied_table(text)
        if table is not None:
            details["table"] = table
        message = f"{classified.cause} {classified.sqlstate} during {run.phase}: {text}"
    elif outcome in (Outcome.CONNECTION_ERROR, Outcome.DNS_ERROR, Outcome.TLS_ERROR):
        message = f"{classified.cause} during {run.phase} {after}: {text}"
    else:
        state = classified.sqlstate or "unknown SQLSTATE"
        if classified.sqlstate == "25006":
            details["canary"] = "refused (read-only)"
        message = f"{classified.cause} {state} during {run.phase}: {text}"
    log.debug("db.failed", check=check.name, outcome=outcome.value, phase=run.phase, sqlstate=classified.sqlstate)
    return ProbeResult(outcome, message, details=details, tables=tables, phases=dict(run.phases))

