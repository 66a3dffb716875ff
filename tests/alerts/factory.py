"""Builders for the alert tests: a config with one check of each kind, results, and a settable clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.core.config import Config
from monitor.core.results import Outcome, Result

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CHECKS: list[dict[str, Any]] = [
    {"name": "backend_health", "kind": "http", "target": "backend", "path": "/health"},
    {"name": "settings_get_unauth", "kind": "auth_contract", "target": "backend",
     "path": "/api/v1/users/{user_id}/settings", "params": {"user_id": "00000000-0000-0000-0000-000000000000"},
     "labels": {"team": "core"}},
    {"name": "voice_health", "kind": "voice", "target": "backend", "path": "/api/v1/pam/voice/health"},
    {"name": "db_roundtrip", "kind": "db", "target": "database", "required_tables": ["user_settings", "wishlists"]},
    {"name": "rest_tables", "kind": "postgrest", "target": "backend", "required_tables": ["user_settings"]},
]


def make_config(state_dir: Path | None = None, *, sinks: list[dict[str, Any]] | None = None,
                alerts: dict[str, Any] | None = None, checks: list[dict[str, Any]] | None = None,
                **root: Any) -> Config:
    """A valid config; `alerts` merges into the alerts block."""
    raw: dict[str, Any] = {
        "service": "pam-backend",
        "state_dir": str(state_dir or Path("/nonexistent")),
        "defaults": {"interval": "30s", "timeout": "5s", "failure_threshold": 2, "success_threshold": 2},
        "targets": {"backend": {"base_url": "http://127.0.0.1:1"},
                    "database": {"dsn": "postgresql://app:hunter2@127.0.0.1:1/app"}},
        "checks": CHECKS if checks is None else checks,
        "alerts": {"sinks": sinks or [], "external_labels": {"env": "test"}, **(alerts or {})},
        **root,
    }
    return Config.model_validate(raw)


KINDS = {c["name"]: c["kind"] for c in CHECKS}


def result(check: str, outcome: Outcome | str, *, status: int | None = None, message: str | None = None,
           at: float = T0, confirmation: bool = False, tables: dict[str, bool] | None = None,
           details: dict[str, Any] | None = None, kind: str | None = None) -> Result:
    """A finished run of `check` with the given outcome."""
    outcome = Outcome(outcome)
    return Result(
        check=check, kind=kind or KINDS[check], outcome=outcome,
        message=message or f"{check}: {outcome.value}" + (f", got {status}" if status else ""),
        duration_s=0.012, started_at=at, finished_at=at, status_code=status,
        details=details or {}, tables=tables or {}, confirmation=confirmation,
    )
