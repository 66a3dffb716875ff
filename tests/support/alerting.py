"""Builders for the alert tests: a config with one check of each kind, results, an engine, a recording sink."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prometheus_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerts import AlertEngine
from monitor.core.clock import Clock, SystemClock
from monitor.core.config import Config
from monitor.core.results import HttpFacts, Outcome, ProbeResult, Result
from probes import RULES_BY_KIND
from tests.support.clock import T0

CHECKS: list[dict[str, Any]] = [
    {"name": "backend_health", "kind": "http", "target": "backend", "path": "/health"},
    {"name": "settings_get_unauth", "kind": "auth_contract", "target": "backend",
     "path": "/api/v1/users/{user_id}/settings", "params": {"user_id": "00000000-0000-0000-0000-000000000000"},
     "labels": {"team": "core"}},
    {"name": "voice_health", "kind": "voice", "target": "backend", "path": "/api/v1/pam/voice/health"},
    {"name": "db_roundtrip", "kind": "db", "target": "database", "required_tables": ["user_settings", "wishlists"]},
    {"name": "rest_tables", "kind": "postgrest", "target": "backend", "required_tables": ["user_settings"]},
    {"name": "settings_journey", "kind": "journey", "target": "backend", "identity": "monitor_user",
     "steps": [{"name": "read", "path": "/api/v1/users/{sub}/settings"},
               {"name": "write", "method": "PUT", "path": "/api/v1/users/{sub}/settings", "json": {"n": "{run_id}"}}]},
    {"name": "settings_isolation", "kind": "tenant_isolation", "target": "backend", "identity": "monitor_user",
     "path": "/api/v1/users/{user_id}/settings", "params": {"user_id": "00000000-0000-4000-8000-000000000002"}},
    {"name": "nightly_backup", "kind": "heartbeat", "interval": "1h", "grace": "10m",
     "token": "heartbeat-token-of-the-alert-tests"},
]
IDENTITIES: dict[str, Any] = {
    "monitor_user": {"mint": {"secret": "test-jwt-secret-that-is-long-enough-for-hs256",
                              "sub": "7c0f3a8e-0000-4000-8000-000000000001"}},
}
KINDS = {c["name"]: c["kind"] for c in CHECKS}


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
        "identities": IDENTITIES,
        "checks": CHECKS if checks is None else checks,
        "alerts": {"sinks": sinks or [], "external_labels": {"env": "test"}, **(alerts or {})},
        **root,
    }
    return Config.model_validate(raw)


def result(check: str, outcome: Outcome | str, *, status: int | None = None, message: str | None = None,
           at: float = T0, confirmation: bool = False, tables: dict[str, bool] | None = None,
           details: dict[str, Any] | None = None, kind: str | None = None, http: HttpFacts | None = None,
           finished_at: float | None = None) -> Result:
    """A finished run of `check` with the given outcome (and, for an HTTP kind, what its transport saw); it
    finishes when it starts unless `finished_at` says otherwise."""
    outcome = Outcome(outcome)
    observed = ProbeResult(outcome, message or f"{check}: {outcome.value}" + (f", got {status}" if status else ""),
                           status, details or {}, tables or {}, http=http)
    return Result(check, kind or KINDS[check], observed, duration_s=0.012, started_at=at,
                  finished_at=at if finished_at is None else finished_at,
                  confirmation=confirmation)


def make_engine(config: Config, registry: prometheus_client.CollectorRegistry | None = None,
                clock: Clock | None = None, **options: Any) -> AlertEngine:
    """An engine with the probes' rules map; a fresh registry and the system clock unless given."""
    return AlertEngine(config, rules_by_kind=RULES_BY_KIND, registry=registry or prometheus_client.CollectorRegistry(),
                       clock=clock or SystemClock(), **options)


def target_alerts(engine: AlertEngine) -> list[dict[str, Any]]:
    """engine.active_alerts() without the MonitorWatchdog (listed, firing, while the engine runs)."""
    return [a for a in engine.active_alerts() if a["alertname"] != "MonitorWatchdog"]


def sent(registry: prometheus_client.CollectorRegistry, sink: str, outcome: str = "sent") -> float:
    """pam_monitor_notifications_total for one sink and result (0 when absent)."""
    return registry.get_sample_value("pam_monitor_notifications_total", {"sink": sink, "result": outcome}) or 0.0


def queue_depth(registry: prometheus_client.CollectorRegistry) -> float | None:
    """pam_monitor_notification_queue_depth."""
    return registry.get_sample_value("pam_monitor_notification_queue_depth")


@dataclass
class Recorder:
    """A sink stand-in served by a real local server: records every request and answers from a script (then
    202 on PagerDuty's path, 200 elsewhere)."""

    script: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        """Record the request; answer with the next scripted status."""
        body = await request.json()
        with self.lock:
            self.requests.append({"path": request.url.path, "headers": dict(request.headers), "json": body})
            status = self.script.pop(0) if self.script else (202 if "enqueue" in request.url.path else 200)
        return JSONResponse({"status": "x"}, status_code=status)

    def app(self) -> Starlette:
        """The ASGI app to serve."""
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])

    def paths(self) -> list[str]:
        """The path of every request so far, in order."""
        with self.lock:
            return [r["path"] for r in self.requests]

    def bodies(self, path: str) -> list[Any]:
        """The JSON body of every request to `path`, in order."""
        with self.lock:
            return [r["json"] for r in self.requests if r["path"] == path]


REGRESSING = "settings_get_unauth"
"""The check `fire_regression` and `heal_regression` drive (an auth_contract check of make_config)."""


def fire_regression(engine: AlertEngine, check: str = REGRESSING) -> None:
    """403, then 500 twice (the second a confirmation): ContractRegression fires on `check`."""
    for r in (result(check, "ok", status=403), result(check, "server_error", status=500),
              result(check, "server_error", status=500, confirmation=True)):
        engine.observe(r)


def heal_regression(engine: AlertEngine, check: str = REGRESSING) -> None:
    """403 twice: the ContractRegression of `check` resolves."""
    for _ in range(2):
        engine.observe(result(check, "ok", status=403))
