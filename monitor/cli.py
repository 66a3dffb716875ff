"""The `pam-monitor` command line: run, check, validate, notify, demo (the default), discover, init."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import structlog

from monitor.cli_args import CONFIG_VERBS, build_parser, env_path, resolve_shard, shard_listen
from monitor.core.config import (
    Config,
    load_config,
    shard_of,
)
from monitor.core.config.loader import Scope, UnsetVariables
from monitor.core.errors import ConfigError
from monitor.core.results import Result
from monitor.core.secrets import Redactor, collect_secrets
from monitor.logs import LogFormat, configure_logging

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
log = structlog.get_logger("pam_monitor.cli")


def _log_format(args: argparse.Namespace, stream: TextIO) -> LogFormat:
    """The format asked for, else console for a person at a terminal and JSON for a pipe, a file or a journal."""
    chosen: LogFormat | None = args.log_format
    return chosen or ("console" if stream.isatty() else "json")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pam-monitor` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*argv, "demo"])
    if args.command not in CONFIG_VERBS and args.config not in (None, env_path("PAM_MONITOR_CONFIG")):
        parser.error(f"--config does not apply to {args.command}")
    handlers = {"run": _cmd_run, "check": _cmd_check, "validate": _cmd_validate, "notify": _cmd_notify,
                "demo": _cmd_demo, "discover": _cmd_discover, "init": _cmd_init,
                "rules": _cmd_rules}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130


def _load(args: argparse.Namespace, err: TextIO, *, require_checks: bool = True, scope: Scope | None = None,
          lenient: bool = False) -> Config | None:
    """The config of a verb, or None after printing why not. `scope`: the parts the verb uses (only their
    secrets must resolve); `lenient`: UnsetVariables instead of ConfigError when those are the only problems."""
    if args.config is None:
        print("pam-monitor: no config file; pass --config FILE or set PAM_MONITOR_CONFIG "
              "(write a starter with: pam-monitor init)", file=err)
        return None
    try:
        # Only run, check and validate take a shard; notify sends to the sinks whatever the shard.
        shard = args.resolved_shard = resolve_shard(args) if hasattr(args, "replicas_per_shard") else None
        config = load_config(args.config, listen=getattr(args, "listen", None), shard=shard,
                             require_checks=require_checks, scope=scope, lenient=lenient)
        base = getattr(args, "listen_base_port", None)
        if base is not None:
            # The per-shard address becomes the --listen of this process, so a reload keeps it.
            args.listen = shard_listen(config.listen, base, shard)
            config = config.model_copy(update={"listen": args.listen})
        return config
    except ValueError as exc:
        print(f"pam-monitor: {exc}", file=err)
        return None
    except UnsetVariables:
        raise
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        print(f"pam-monitor: {len(exc.problems)} problem(s) in the configuration; nothing was started", file=err)
        return None


def _logging(args: argparse.Namespace, config: Config) -> Redactor:
    redactor = configure_logging(args.log_level or config.log_level, _log_format(args, sys.stdout))
    redactor.update(collect_secrets(config))
    return redactor


def _cmd_validate(args: argparse.Namespace) -> int:
    try:
        config = _load(args, sys.stderr, lenient=not args.strict)
    except UnsetVariables as unset:
        return _validate_unset(args, unset)
    if config is None:
        return EXIT_CONFIG
    return _validated(args, config.state_dir, enabled=sum(1 for c in config.checks if c.enabled),
                      total=len(config.checks), targets=len(config.targets), sinks=len(config.alerts.sinks))


def _validate_unset(args: argparse.Namespace, unset: UnsetVariables) -> int:
    """The file is valid but for references this environment leaves unresolved: warnings, then the ok line."""
    for line in unset.problems:
        print(f"warning: {line}", file=sys.stderr)
    print(f"pam-monitor: {len(unset.problems)} reference(s) unresolved here: needed when the checks run "
          "(validate --strict makes them problems)", file=sys.stderr)
    doc = unset.document
    checks = [c for c in doc.get("checks") or [] if isinstance(c, dict)]
    if args.resolved_shard is not None:
        checks = [c for c in checks if shard_of(str(c.get("name")), args.resolved_shard[1]) == args.resolved_shard[0]]
    enabled = sum(1 for c in checks if c.get("enabled", True) is not False)
    sinks = (doc.get("alerts") or {}).get("sinks") or []
    state_dir = Path(str(doc.get("state_dir") or Config.model_fields["state_dir"].default))
    return _validated(args, state_dir, enabled=enabled, total=len(checks), targets=len(doc.get("targets") or {}),
                      sinks=len(sinks))


def _validated(args: argparse.Namespace, state_dir: Path, *, enabled: int, total: int, targets: int,
               sinks: int) -> int:
    from alerts.persist.database import inspect

    problems = inspect(state_dir)
    if problems:
        where = _key_line(args.config, "state_dir")
        for problem in problems:
            print(f"{where}: state_dir: {problem}", file=sys.stderr)
        print(f"pam-monitor: {len(problems)} problem(s) in the configuration; nothing was started", file=sys.stderr)
        return EXIT_CONFIG
    shard = f" in shard {args.resolved_shard[0]}/{args.resolved_shard[1]}" if args.resolved_shard else ""
    print(f"{args.config}: ok: {enabled} checks{shard} ({total - enabled} disabled), {targets} targets, "
          f"{sinks} sinks")
    return EXIT_OK


def _key_line(path: Path, key: str) -> str:
    """`file:line` of a top-level key of the config file, or just `file` when the key is not written in it."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return str(path)
    number = next((i for i, line in enumerate(lines, 1) if line.startswith(f"{key}:")), None)
    return f"{path}:{number}" if number is not None else str(path)


def _cmd_run(args: argparse.Namespace) -> int:
    # The config is loaded before the daemon's modules (and the libraries under them) are imported: parsing a
    # large YAML file leaves freed memory scattered between the objects that stay, and the imports that follow
    # fill it, rather than growing the heap (2.3 MB less resident at 1,000 checks).
    config = _load(args, sys.stderr)
    if config is None:
        return EXIT_CONFIG
    redactor = _logging(args, config)
    from monitor.daemon import Daemon

    daemon = Daemon(
        config, config_path=args.config, listen_override=args.listen,
        shard=args.resolved_shard, engine_factory=_engine_factory(),
        redactor=redactor,
    )
    return asyncio.run(daemon.run())


def _engine_factory() -> Any:
    from alerts import AlertEngine
    from probes import RULES_BY_KIND

    return lambda config, registry, clock: AlertEngine(config, rules_by_kind=RULES_BY_KIND, registry=registry,
                                                       clock=clock)


def _cmd_check(args: argparse.Namespace) -> int:
    # With --only, the other checks' (and the sinks') secrets need not be set.
    config = _load(args, sys.stderr, scope=Scope(checks=frozenset(args.only), sinks="") if args.only else None)
    if config is None:
        return EXIT_CONFIG
    # Logs go to stderr so that stdout holds only the table or the JSON document.
    level = args.log_level or "warning"
    redactor = configure_logging(level, _log_format(args, sys.stderr), stream=sys.stderr)
    redactor.update(collect_secrets(config))
    if args.only:
        unknown = sorted(set(args.only) - {c.name for c in config.checks})
        if unknown:
            print(f"pam-monitor: --only names unknown checks: {', '.join(unknown)}", file=sys.stderr)
            return EXIT_CONFIG
    results = asyncio.run(_check_once(config, args.only, redactor))
    if args.format == "json":
        doc = {"checks": [r.to_status() for r in results]}
        _add_over_time(doc["checks"], config)
        print(json.dumps(doc, indent=2))
    else:
        print(render_table(results))
    return EXIT_OK if all(r.success for r in results) else EXIT_FAILED


def _add_over_time(checks: list[dict[str, Any]], config: Config) -> None:
    """Each check's availability and latency over time, when `state_dir` holds a daemon's history."""
    from monitor.history import read_over_time

    found = read_over_time(config.state_dir, [c["name"] for c in checks], time.time)
    if found is not None:
        for entry in checks:
            entry["over_time"] = found.get(entry["name"])


async def _check_once(config: Config, only: list[str] | None, redactor: Redactor) -> list[Result]:
    from monitor.metrics import Metrics
    from monitor.runner import Runner
    from monitor.state import State
    from probes.deps import build_deps

    deps = build_deps(config)
    if any(c.kind == "heartbeat" for c in config.checks):
        from monitor.heartbeat import saved_book
        from probes.heartbeat import BOOK

        book = saved_book(config.state_dir, deps.clock.time)
        if book is not None:
            deps.resources[BOOK] = book
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


def _cmd_notify(args: argparse.Namespace) -> int:
    from alerts.sinks.notify import chosen_sinks, send_tests

    # A test notification needs only the chosen sinks' secrets: no check, target or identity is read.
    config = _load(args, sys.stderr, require_checks=False, scope=Scope(checks=frozenset(), sinks=args.sink))
    if config is None:
        return EXIT_CONFIG
    redactor = configure_logging(args.log_level or "warning", _log_format(args, sys.stderr), stream=sys.stderr)
    redactor.update(collect_secrets(config))
    names = [s.display_name for s in config.alerts.sinks]
    if not names:
        print("pam-monitor: no sink in alerts.sinks: nothing to test", file=sys.stderr)
        return EXIT_CONFIG
    sinks = chosen_sinks(config, args.sink)
    if not sinks:
        print(f"pam-monitor: --sink {args.sink!r} names no configured sink (configured: {', '.join(names)})",
              file=sys.stderr)
        return EXIT_CONFIG
    answers = asyncio.run(send_tests(config, sinks, now=time.time()))
    for answer in answers:
        print(redactor.scrub(answer.line()))
    accepted = sum(1 for a in answers if a.accepted)
    print(f"{accepted} of {len(answers)} accepted the test notification")
    return EXIT_OK if accepted == len(answers) else EXIT_FAILED


def _cmd_rules(args: argparse.Namespace) -> int:
    from monitor.slo import render_rules, specs

    config = _load(args, sys.stderr, require_checks=False)
    if config is None:
        return EXIT_CONFIG
    text = render_rules(config, job=args.job)
    if args.output is None:
        print(text, end="")
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:  # a directory, a missing parent, permissions, a full disk
            print(f"pam-monitor rules: {args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_CONFIG
    if not specs(config):
        print("pam-monitor: the config has no slo: no rules written", file=sys.stderr)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo.cli import run_demo

    # A person at a terminal gets readable lines; a pipe or a file gets JSON, as from `run`.
    configure_logging(args.log_level or "info", args.log_format or ("console" if sys.stdout.isatty() else "json"))
    return run_demo(args)


def _cmd_discover(args: argparse.Namespace) -> int:
    from monitor.discover import run_discover

    configure_logging(args.log_level or "warning", _log_format(args, sys.stderr), stream=sys.stderr)
    try:
        return run_discover(args)
    except UnicodeDecodeError:
        print(f"pam-monitor discover: {args.openapi}: not UTF-8 text; pass an OpenAPI document (JSON or YAML)",
              file=sys.stderr)
    except OSError as exc:  # the --output file could not be written (permissions, a full disk)
        print(f"pam-monitor discover: {exc.filename or args.output}: cannot write: {exc.strerror or exc}",
              file=sys.stderr)
    return EXIT_CONFIG


def _cmd_init(args: argparse.Namespace) -> int:
    from monitor.init import run_init

    return run_init(args)


if __name__ == "__main__":
    sys.exit(main())
