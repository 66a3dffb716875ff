"""The `pam-monitor` command line: run, check, validate, demo (the default), discover."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import structlog

from monitor import __version__
from monitor.core.config import Config, load_config, parse_shard
from monitor.core.errors import ConfigError
from monitor.core.results import Result
from monitor.core.secrets import Redactor, collect_secrets
from monitor.logs import configure_logging
from monitor.metrics import Metrics
from monitor.runner import Runner
from monitor.state import State
from probes.deps import build_deps

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
log = structlog.get_logger("pam_monitor.cli")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-format", choices=["json", "console"], default=None,
                        help="json (default): one JSON object per line; console: for people")
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None,
                        help="overrides log_level from the config file")
    with_config = argparse.ArgumentParser(add_help=False)
    with_config.add_argument("--config", "-c", type=Path, default=_env_path("PAM_MONITOR_CONFIG"),
                             help="YAML config file (default: $PAM_MONITOR_CONFIG)")
    with_config.add_argument("--shard", default=None, metavar="I/N",
                             help="run only the checks of shard I of N (stable hash of the check name)")

    parser = argparse.ArgumentParser(
        prog="pam-monitor",
        description="Continuous health monitoring for the PAM backend, its voice system and its database. "
                    "With no command, runs the built-in demo.",
    )
    parser.add_argument("--version", action="version", version=f"pam-monitor {__version__}")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", parents=[common, with_config], help="run the daemon")
    run.add_argument("--listen", default=None, help="host:port for /metrics, /status, ... (overrides the file)")

    check = sub.add_parser("check", parents=[common, with_config],
                           help="run every check once; exit 0 all ok, 1 some failed, 2 bad config")
    check.add_argument("--format", choices=["table", "json"], default="table")
    check.add_argument("--listen", default=None, help=argparse.SUPPRESS)
    check.add_argument("--only", action="append", default=None, metavar="NAME",
                       help="run only this check (repeatable)")

    validate = sub.add_parser("validate", parents=[common, with_config],
                              help="check a config file; exit 0 valid, 2 invalid")
    validate.add_argument("--listen", default=None, help=argparse.SUPPRESS)

    demo = sub.add_parser("demo", parents=[common], help="start the demo backend and the daemon watching it")
    demo.add_argument("--listen", default="127.0.0.1:9108", help="where the daemon serves /metrics and /status")
    demo.add_argument("--target-port", type=int, default=8000, help="port of the demo backend on 127.0.0.1")
    demo.add_argument("--interval", default="5s", help="check interval in the demo (default 5s)")
    demo.add_argument("--no-db", action="store_true", help="do not start or use PostgreSQL")
    demo.add_argument("--alertmanager", default=None, metavar="URL",
                      help="also send the demo's alerts to this Alertmanager")

    discover = sub.add_parser("discover", parents=[common],
                              help="write auth_contract checks for every secured operation of an OpenAPI spec")
    discover.add_argument("--openapi", required=True, help="URL or file of the OpenAPI (3.x) document")
    discover.add_argument("--target", default="backend", help="target name to use in the generated checks")
    discover.add_argument("--output", "-o", type=Path, default=None, help="file to write (default: stdout)")
    return parser


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pam-monitor` console script."""
    args = _parser().parse_args(argv)
    command = args.command or "demo"
    if args.command is None:
        args = _parser().parse_args(["demo"])
    handlers = {"run": _cmd_run, "check": _cmd_check, "validate": _cmd_validate, "demo": _cmd_demo,
                "discover": _cmd_discover}
    try:
        return handlers[command](args)
    except KeyboardInterrupt:
        return 130


def _load(args: argparse.Namespace, err: TextIO) -> Config | None:
    if args.config is None:
        print("pam-monitor: no config file; pass --config FILE or set PAM_MONITOR_CONFIG "
              "(see examples/pam-monitor.yaml)", file=err)
        return None
    try:
        shard = parse_shard(args.shard) if getattr(args, "shard", None) else None
        return load_config(args.config, listen=args.listen, shard=shard)
    except ValueError as exc:
        print(f"pam-monitor: {exc}", file=err)
        return None
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        print(f"pam-monitor: {len(exc.problems)} problem(s) in the configuration; nothing was started", file=err)
        return None


def _logging(args: argparse.Namespace, config: Config) -> Redactor:
    redactor = configure_logging(args.log_level or config.log_level, args.log_format or "json")
    redactor.update(collect_secrets(config))
    return redactor


def _cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args, sys.stderr)
    if config is None:
        return EXIT_CONFIG
    enabled = sum(1 for c in config.checks if c.enabled)
    print(f"{args.config}: ok: {enabled} checks ({len(config.checks) - enabled} disabled), "
          f"{len(config.targets)} targets, {len(config.alerts.sinks)} sinks")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    config = _load(args, sys.stderr)
    if config is None:
        return EXIT_CONFIG
    redactor = _logging(args, config)
    from monitor.daemon import Daemon

    daemon = Daemon(
        config, config_path=args.config, listen_override=args.listen,
        shard=parse_shard(args.shard) if args.shard else None, engine_factory=_engine_factory(),
        redactor=redactor,
    )
    return asyncio.run(daemon.run())


def _engine_factory() -> Any:
    from alerts import AlertEngine
    from probes import RULES_BY_KIND

    return lambda config, registry, clock: AlertEngine(config, rules_by_kind=RULES_BY_KIND, registry=registry,
                                                       clock=clock)


def _cmd_check(args: argparse.Namespace) -> int:
    config = _load(args, sys.stderr)
    if config is None:
        return EXIT_CONFIG
    # Logs go to stderr so that stdout holds only the table or the JSON document.
    level = args.log_level or "warning"
    redactor = configure_logging(level, args.log_format or "json", stream=sys.stderr)
    redactor.update(collect_secrets(config))
    if args.only:
        unknown = sorted(set(args.only) - {c.name for c in config.checks})
        if unknown:
            print(f"pam-monitor: --only names unknown checks: {', '.join(unknown)}", file=sys.stderr)
            return EXIT_CONFIG
    results = asyncio.run(_check_once(config, args.only, redactor))
    if args.format == "json":
        doc = {"checks": [r.to_status() for r in results]}
        print(json.dumps(doc, indent=2))
    else:
        print(render_table(results))
    return EXIT_OK if all(r.success for r in results) else EXIT_FAILED


async def _check_once(config: Config, only: list[str] | None, redactor: Redactor) -> list[Result]:
    deps = build_deps(config)
    try:
        runner = Runner(config, deps, Metrics(process_metrics=False), State(deps.clock.monotonic),
                        redact=redactor.scrub)
        return await runner.run_all(only)
    finally:
        await deps.aclose()


def render_table(results: Sequence[Result]) -> str:
    """A plain-text table of results for people (the `check` command)."""
    header = ("CHECK", "KIND", "OUTCOME", "STATUS", "TIME", "MESSAGE")
    rows = [
        (r.check, r.kind, r.outcome.value, str(r.status_code or "-"), f"{r.duration_s * 1000:.0f}ms", r.message)
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])
    failed = sum(1 for r in results if not r.success)
    lines.append(f"\n{len(results) - failed} ok, {failed} failed")
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo.cli import run_demo

    # A person at a terminal gets readable lines; a pipe or a file gets JSON, as from `run`.
    configure_logging(args.log_level or "info", args.log_format or ("console" if sys.stdout.isatty() else "json"))
    return run_demo(args)


def _cmd_discover(args: argparse.Namespace) -> int:
    from monitor.discover import run_discover

    configure_logging(args.log_level or "warning", args.log_format or "json", stream=sys.stderr)
    return run_discover(args)


if __name__ == "__main__":
    sys.exit(main())
