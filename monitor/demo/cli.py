"""`pam-monitor demo`: start the demo backend (and a throwaway PostgreSQL) and the daemon watching them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import structlog
import yaml

from monitor.core.config import load_config
from monitor.core.durations import parse_duration
from monitor.core.errors import ConfigError
from monitor.demo.schema import SEED_TABLES
from monitor.demo.tokens import demo_token

log = structlog.get_logger("pam_monitor.demo")
DEMO_USER = "11111111-2222-3333-4444-555555555555"
TOKEN_VAR = "PAM_DEMO_USER_TOKEN"  # noqa: S105 - the name of a variable, not a secret
DSN_VAR = "PAM_DEMO_DATABASE_URL"
_PORT_TAKEN = ("pam-monitor demo: cannot listen on 127.0.0.1:{port} for the demo backend (port in use?); "
               "pass --target-port")


def demo_config(*, target: str, listen: str, state_dir: Path, interval: float, with_db: bool,
                alertmanager: str | None) -> dict[str, Any]:
    """The demo's config document; secrets stay in environment variables, referenced as ${VAR}."""
    timeout = min(2.0, interval / 2)
    user = {"user_id": DEMO_USER}
    settings = "/api/v1/users/{user_id}/settings"
    checks: list[dict[str, Any]] = [
        {"name": "backend_health", "kind": "http", "target": "backend", "path": "/health",
         "expect": {"status": [200], "json": {"status": "healthy"}}},
        {"name": "voice_health", "kind": "voice", "target": "backend", "path": "/api/v1/pam/voice/health",
         "expect": {"json": {"status": "healthy"}},
         "synthesize": {"method": "POST", "path": "/api/v1/pam/voice/tts", "json": {"text": "health check"},
                        "min_bytes": 1000}},
        {"name": "settings_get_unauth", "kind": "auth_contract", "target": "backend", "method": "GET",
         "path": settings, "params": user},
        {"name": "settings_put_unauth", "kind": "auth_contract", "target": "backend", "method": "PUT",
         "path": settings, "params": user, "json": {"voice_enabled": True}},
        # What a signed-in user gets: the check nobody ran during the seed incident.
        {"name": "settings_get_signed_in", "kind": "http", "target": "backend", "path": settings, "params": user,
         "headers": {"Authorization": f"Bearer ${{{TOKEN_VAR}}}"}, "expect": {"status": [200]}},
    ]
    targets: dict[str, Any] = {"backend": {"base_url": target, "health_check": "backend_health"}}
    if with_db:
        targets["database"] = {"dsn": f"${{{DSN_VAR}}}"}
        checks.append({
            "name": "db_roundtrip", "kind": "db", "target": "database", "canary": True, "require_rls": True,
            "required_tables": list(SEED_TABLES),
            "required_columns": {"user_settings": ["user_id", "voice_enabled", "created_at", "updated_at"]},
        })
    sinks = [{"kind": "alertmanager", "url": alertmanager}] if alertmanager else []
    return {
        "service": "pam-backend-demo",
        "listen": listen,
        "state_dir": str(state_dir),
        "shutdown_timeout": "5s",
        "defaults": {"interval": f"{interval:g}s", "timeout": f"{timeout:g}s",
                     "failure_threshold": 2, "success_threshold": 2},
        "targets": targets,
        "checks": checks,
        "alerts": {"sinks": sinks, "resend_interval": "30s"},
    }


def banner(*, target: str, listen: str, config_path: Path, db_line: str, interval: float) -> str:
    """What the demo prints before it starts: where to look and how to flip each fault."""
    status = f"http://{listen}"
    return f"""
pam-monitor demo
  demo backend     {target}
  database         {db_line}
  status page      {status}/
  status JSON      curl -s {status}/status | python3 -m json.tool
  metrics          curl -s {status}/metrics | grep -E '^(probe_success|pam_monitor_check_outcome.* 1$)'
  config in use    {config_path}   (edit it, then: kill -HUP {os.getpid()})

Checks run every {interval:g} s; an alert fires after 2 bad results (about one interval plus the 2 s
confirmation re-run). Flip one fault at a time, watch /status, then heal:
  curl -X POST {target}/_faults/settings_500   # the 403 that turns into a 500  -> ContractRegression
  curl -X POST {target}/_faults/settings_open  # protected endpoint answers 200 -> AuthBypass
  curl -X POST {target}/_faults/drop_table     # user_settings dropped          -> TableMissing
  curl -X POST {target}/_faults/voice_down     # voice health and TTS 503       -> VoiceDegraded
  curl -X POST {target}/_faults/hang           # every endpoint hangs           -> EndpointDown (timeout)
  curl -X DELETE {target}/_faults              # heal everything; alerts resolve after 2 good results
Logs follow, one JSON object per line. Stop with Ctrl-C.
"""


def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the demo until SIGINT/SIGTERM; return the exit code."""
    return asyncio.run(_demo(args, out or sys.stderr))


async def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from alerts.engine import AlertEngine
    from monitor.daemon import Daemon
    from monitor.demo.app import create_demo_app
    from monitor.server import bind_socket, build_server

    interval = parse_duration(args.interval)
    target = f"http://127.0.0.1:{args.target_port}"
    try:
        # Bind here, before anything starts: uvicorn's own bind failure is a SystemExit(3) that tears the event
        # loop down (a traceback instead of this line).
        backend_sock = bind_socket("127.0.0.1", args.target_port)
    except OSError:
        print(_PORT_TAKEN.format(port=args.target_port), file=out)
        return 1
    work = Path(tempfile.mkdtemp(prefix="pam-monitor-demo-"))
    temp_pg: Any = None
    store: Any = None
    try:
        dsn, db_line, temp_pg = await _database(args, work)
        if dsn is not None:
            from monitor.demo.store import PgSettingsStore, ensure_schema

            await ensure_schema(dsn)
            store = PgSettingsStore(dsn)
            os.environ[DSN_VAR] = dsn
        jwt_secret = secrets.token_urlsafe(32)
        os.environ[TOKEN_VAR] = demo_token(jwt_secret, DEMO_USER, 7 * 86400.0)
        document = demo_config(target=target, listen=args.listen, state_dir=work / "state", interval=interval,
                               with_db=dsn is not None, alertmanager=args.alertmanager)
        config_path = work / "pam-monitor.yaml"
        config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        try:
            config = load_config(config_path)
        except ConfigError as exc:  # only a bad --listen or --interval can get here
            for problem in exc.problems:
                print(problem, file=out)
            return 2

        backend = build_server(create_demo_app(jwt_secret=jwt_secret, store=store), "127.0.0.1", args.target_port)
        backend_task = asyncio.get_running_loop().create_task(backend.serve(sockets=[backend_sock]))
        while not backend.started and not backend_task.done():  # noqa: ASYNC110 - uvicorn offers no event
            await asyncio.sleep(0.02)
        if not backend.started:
            print(_PORT_TAKEN.format(port=args.target_port), file=out)
            return 1
        print(banner(target=target, listen=args.listen, config_path=config_path, db_line=db_line,
                     interval=interval), file=out, flush=True)
        from probes import RULES_BY_KIND

        daemon = Daemon(
            config, config_path=config_path,
            engine_factory=lambda c, registry, clock: AlertEngine(c, rules_by_kind=RULES_BY_KIND, registry=registry,
                                                                  clock=clock),
        )
        try:
            return await daemon.run()
        finally:
            backend.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(backend_task, timeout=3)
    finally:
        backend_sock.close()
        if store is not None:
            with contextlib.suppress(Exception):
                await store.aclose()
        if temp_pg is not None:
            await asyncio.to_thread(temp_pg.stop)
        shutil.rmtree(work, ignore_errors=True)


async def _database(args: argparse.Namespace, work: Path) -> tuple[str | None, str, Any]:
    """Pick the demo's PostgreSQL: none, $DATABASE_URL, or a throwaway cluster from the installed binaries."""
    if args.no_db:
        return None, "not used (--no-db): the db check is left out", None
    env_dsn = os.environ.get("DATABASE_URL")
    if env_dsn:
        return env_dsn, "$DATABASE_URL (the drop_table fault really drops user_settings there)", None
    from monitor.demo.pgtemp import TempPostgres, find_pg_bin

    if find_pg_bin() is None:
        line = "PostgreSQL server binaries not found: running without the db check (apt-get install postgresql)"
        print(f"pam-monitor demo: {line}", file=sys.stderr)
        return None, line, None
    temp = TempPostgres()
    await asyncio.to_thread(temp.start)
    return temp.dsn, f"throwaway PostgreSQL cluster on 127.0.0.1:{temp.port} (removed at exit)", temp
