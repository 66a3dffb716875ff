"""`pam-monitor demo`: start the demo backend (and a throwaway PostgreSQL) and the daemon watching them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shlex
import shutil
import socket
import sys
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psycopg
import structlog
import yaml
from psycopg.conninfo import conninfo_to_dict

from monitor.core.config import load_config, parse_listen
from monitor.core.durations import parse_duration
from monitor.core.errors import ConfigError
from monitor.demo.config import demo_config, variables
from monitor.demo.faults import FAULTS, consequences
from monitor.demo.schema import DEMO_SCHEMA
from monitor.demo.tokens import new_csrf_token

log = structlog.get_logger("pam_monitor.demo")
_PORT_TAKEN = ("pam-monitor demo: cannot listen on {where} for {what} (port in use?); pass {option}")


def banner(*, target: str, listen: str, config_path: Path, db_line: str, interval: float,
           checks: Collection[str], with_db: bool, exports: Mapping[str, str],
           severity: Mapping[str, str] | None = None, program: str = "pam-monitor", role_faults: bool = True,
           cluster_faults: bool = True) -> str:
    """What the demo prints once its ports are known to be free: where to look, how to check from another
    terminal, and for each fault the curl that flips it and the alerts it fires with this config."""
    status = f"http://{listen}"
    exported = "\n".join(f"  export {name}={shlex.quote(value)}" for name, value in exports.items())
    lines = []
    for fault in FAULTS:
        if fault.needs_db and not with_db:
            lines.append(f"  # {fault.name}: {fault.effect} (needs the database; this demo runs without one)")
            continue
        if fault.own_cluster and not cluster_faults:
            lines.append(f"  # {fault.name}: off: it changes objects outside the demo's schema "
                         f"(needs the demo's own throwaway cluster, not --database-url)")
            continue
        if fault.needs_db and not fault.own_cluster and not role_faults:
            lines.append(f"  # {fault.name}: {fault.effect} (needs the role authenticated, not usable here)")
            continue
        lines.append(f"  curl -X POST {target}/_faults/{fault.name}")
        lines.append(f"      {fault.effect}")
        lines.append(f"      -> {consequences(fault, checks, severity)}")
        if fault.lesson:
            lines.append(f"      ({fault.lesson})")
    faults = "\n".join(lines)
    return f"""
pam-monitor demo
  demo backend     {target}   (OpenAPI: {target}/openapi.json)
  database         {db_line}
  status page      {status}/
  status JSON      curl -s {status}/status | python3 -m json.tool
  metrics          curl -s {status}/metrics | grep -E '^(probe_success|pam_monitor_check_last_outcome)'
  config in use    {config_path}   (edit it, then: kill -HUP {os.getpid()})

One round of the same checks from another terminal (paste these lines there):
{exported}
  {program} check --config {shlex.quote(str(config_path))}

Checks run every {interval:g} s; an alert fires after 2 bad results (about one interval plus the 2 s
confirmation re-run). Flip one fault at a time, watch /status, then heal:
{faults}
  curl -X DELETE {target}/_faults
      heal everything; alerts resolve after 2 good results
Logs follow, one JSON object per line. Stop with Ctrl-C.
"""


def _program() -> str:
    """How to run pam-monitor from another terminal: this very script when started as `.../bin/pam-monitor`."""
    started_as = Path(sys.argv[0])
    return str(started_as.absolute()) if started_as.name == "pam-monitor" else "pam-monitor"


def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the demo until SIGINT/SIGTERM; return the exit code."""
    return asyncio.run(_demo(args, out or sys.stderr))


def _port_free(listen: str) -> bool:
    """Whether `host:port` can be listened on right now (bound and released at once)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from alerts.engine import AlertEngine
    from alerts.judge.rules import RULES
    from monitor.daemon import Daemon
    from monitor.demo.app import create_demo_app
    from monitor.demo.store import DemoDatabaseError
    from monitor.server import bind_socket, build_server

    interval = parse_duration(args.interval)  # checked by the option's type (cli_args.demo_interval)
    target = f"http://127.0.0.1:{args.target_port}"
    try:
        # Bind here, before anything starts: uvicorn's own bind failure is a SystemExit(3) that tears the event
        # loop down (a traceback instead of this line).
        backend_sock = bind_socket("127.0.0.1", args.target_port)
    except OSError:
        print(_PORT_TAKEN.format(where=f"127.0.0.1:{args.target_port}", what="the demo backend",
                                 option="--target-port"), file=out)
        return 1
    try:
        listen_free = _port_free(args.listen)
    except ValueError as exc:
        backend_sock.close()
        print(f"pam-monitor demo: --listen {exc}", file=out)
        return 2
    if not listen_free:
        backend_sock.close()
        print(_PORT_TAKEN.format(where=args.listen, what="the status page and metrics", option="--listen"), file=out)
        return 1
    work = Path(tempfile.mkdtemp(prefix="pam-monitor-demo-"))
    db: _Db | None = None
    store: Any = None
    supabase: Any = None
    try:
        try:
            db = await _database(args, out)
            dsn, db_line = db.dsn, db.line
            if dsn is not None:
                from monitor.demo.store import PgSettingsStore, ensure_schema

                if db.cluster is not None:  # only a cluster the demo made gets the role and the public tables
                    from monitor.demo.supabase import start_supabase_parts

                    await ensure_schema(dsn)
                    # ...and the Supabase-only parts: supabase_migrations and NOTIFY pgrst are the cluster's own.
                    supabase = await start_supabase_parts(dsn, work / "migrations")
                store = PgSettingsStore(dsn, schema=db.schema, role_faults=db.as_role)
        except (DemoDatabaseError, psycopg.Error, OSError, RuntimeError) as exc:
            print(f"pam-monitor demo: {' '.join(str(exc).split()) or exc.__class__.__name__}", file=out)
            return 2
        jwt_secret = secrets.token_urlsafe(32)
        document = demo_config(target=target, listen=args.listen, state_dir=work / "state", interval=interval,
                               with_db=dsn is not None, alertmanager=args.alertmanager, schema=db.schema,
                               as_role=db.as_role,
                               migrations_dir=supabase.migrations_dir if supabase is not None else None)
        exports = variables(document, secret=jwt_secret, csrf=new_csrf_token(jwt_secret), dsn=dsn)
        os.environ.update(exports)
        config_path = work / "pam-monitor.yaml"
        config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        try:
            config = load_config(config_path)
        except ConfigError as exc:  # only a bad --listen or --interval can get here
            for problem in exc.problems:
                print(problem, file=out)
            return 2

        app = create_demo_app(jwt_secret=jwt_secret, store=store, supabase=supabase)
        backend = build_server(app, "127.0.0.1", args.target_port)
        backend_task = asyncio.get_running_loop().create_task(backend.serve(sockets=[backend_sock]))
        while not backend.started and not backend_task.done():  # noqa: ASYNC110 - uvicorn offers no event
            await asyncio.sleep(0.02)
        if not backend.started:
            print(_PORT_TAKEN.format(where=f"127.0.0.1:{args.target_port}", what="the demo backend",
                                     option="--target-port"), file=out)
            return 1
        print(banner(target=target, listen=args.listen, config_path=config_path, db_line=db_line,
                     interval=interval, checks={c.name for c in config.checks}, with_db=dsn is not None,
                     exports=exports, severity={name: rule.severity for name, rule in RULES.items()},
                     program=_program(), role_faults=db.as_role, cluster_faults=supabase is not None),
              file=out, flush=True)
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
        if supabase is not None:
            with contextlib.suppress(Exception):
                await supabase.aclose()
        if store is not None:
            with contextlib.suppress(Exception):
                await store.aclose()
        if db is not None and db.own_schema and db.dsn is not None:
            from monitor.demo.store import drop_own_schema

            try:
                await drop_own_schema(db.dsn)
            except psycopg.Error as exc:
                print(f"pam-monitor demo: could not drop the schema {DEMO_SCHEMA} ({' '.join(str(exc).split())}); "
                      f"drop it by hand: DROP SCHEMA {DEMO_SCHEMA} CASCADE", file=out)
        if db is not None and db.cluster is not None:
            await asyncio.to_thread(db.cluster.stop)
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Db:
    """The database the demo uses: its DSN, the banner's line, the throwaway cluster (when it made one), the schema
    its tables are in, whether the as-role check can run, and whether the schema is dropped at exit."""

    dsn: str | None
    line: str
    cluster: Any = None
    schema: str = "public"
    as_role: bool = True
    own_schema: bool = False


def _where(dsn: str) -> str:
    """user@host:port/dbname of a DSN, without its password (for the banner)."""
    parts = conninfo_to_dict(dsn)
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"{user}{parts.get('host') or 'localhost'}{port}/{parts.get('dbname') or ''}"


async def _database(args: argparse.Namespace, out: TextIO) -> _Db:
    """Pick the demo's PostgreSQL: none (--no-db), an existing one inside a schema of the demo's own
    (--database-url), or a throwaway cluster from the installed binaries. $DATABASE_URL is never used: the demo
    changes only a database it made, unless told otherwise."""
    from monitor.demo.store import prepare_own_schema

    if args.no_db:
        return _Db(None, "not used (--no-db): the db checks are left out")
    if args.database_url:
        why_not = await prepare_own_schema(args.database_url)
        line = (f"{_where(args.database_url)} (--database-url), inside the schema {DEMO_SCHEMA} only: "
                "created now, dropped at exit; nothing else in that database is changed")
        if why_not is not None:
            print(f"pam-monitor demo: db_as_user and the revoke_grants and rls_recursion faults are off: {why_not}, "
                  "and the demo creates no roles in a database it did not create", file=out)
        print("pam-monitor demo: db_migrations, rest_api and the unapplied_migration and stale_schema_cache faults "
              "are off: they need supabase_migrations and NOTIFY pgrst, which reach outside the demo's schema "
              "(only on the demo's own throwaway cluster)", file=out)
        return _Db(args.database_url, line, schema=DEMO_SCHEMA, as_role=why_not is None, own_schema=True)
    if os.environ.get("DATABASE_URL"):
        print("pam-monitor demo: $DATABASE_URL is set and not used: the demo runs on a throwaway cluster of its "
              "own (pass --database-url to use an existing database, in a schema of the demo's own)", file=out)
    from monitor.demo.pgtemp import TempPostgres, find_pg_bin

    if find_pg_bin() is None:
        line = ("PostgreSQL server binaries not found: running without the db checks (apt-get install postgresql, "
                "or pass --database-url URL)")
        print(f"pam-monitor demo: {line}", file=out)
        return _Db(None, line)
    temp = TempPostgres()
    await asyncio.to_thread(temp.start)
    return _Db(temp.dsn, f"throwaway PostgreSQL cluster on 127.0.0.1:{temp.port} (removed at exit)", temp)
