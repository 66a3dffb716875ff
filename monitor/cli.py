"""The `pam-monitor` command line: run, check, validate, notify, demo (the default), discover."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import structlog

from monitor import __version__
from monitor.core.config import (
    DEFAULT_REPLICAS,
    Config,
    load_config,
    parse_listen,
    parse_shard,
    shard_from_ordinal,
)
from monitor.core.errors import ConfigError
from monitor.core.results import Result
from monitor.core.secrets import Redactor, collect_secrets
from monitor.logs import LogFormat, configure_logging
from monitor.metrics import Metrics
from monitor.runner import Runner
from monitor.state import State
from probes.deps import build_deps

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
SHARD_ENV = "PAM_MONITOR_SHARD"
log = structlog.get_logger("pam_monitor.cli")


_LOG_FORMAT_HELP = ("json: one JSON object per line; console: lines for people "
                    "(default: console at a terminal, json otherwise)")
_LEVELS = ["debug", "info", "warning", "error"]
_VERBS: dict[str, tuple[str, str, str, str]] = {
    # verb: (one line for `pam-monitor --help`, description, exit codes, examples)
    "run": (
        "run the daemon: checks on their intervals, alerts, /metrics, /status and the status page",
        "Run the daemon: every enabled check on its interval, alerts to the configured sinks, and /metrics, "
        "/status, /healthz, /readyz and a status page at / on the listen address. SIGHUP reloads the file (a bad "
        "file keeps the running configuration); SIGTERM or Ctrl-C stops within shutdown_timeout.",
        "0  stopped by SIGTERM or Ctrl-C\n"
        "1  could not start: the listen address is taken or not on this host\n"
        "2  bad configuration, no config file, bad usage, or state_dir cannot be created or written\n"
        "3  the alert state database is unusable: corrupt, from a newer version, on a full disk, or in use",
        "pam-monitor run --config pam-monitor.yaml\n"
        "pam-monitor --log-format console run -c pam-monitor.yaml --listen 127.0.0.1:9200",
    ),
    "check": (
        "run every check once, print a table (or JSON) and exit 0 ok / 1 failed / 2 bad config",
        "Run every enabled check once, print the results and exit: for CI, cron, and a first look at a new "
        "config file. The table or JSON goes to stdout; logs go to stderr.",
        "0  every check passed\n"
        "1  at least one check failed (any outcome but ok, slow included)\n"
        "2  bad configuration, no config file, an unknown name in --only, or bad usage",
        "pam-monitor check --config pam-monitor.yaml\n"
        "pam-monitor check -c pam-monitor.yaml --only backend_health --format json",
    ),
    "validate": (
        "check a config file without running anything; one line per problem",
        "Read a config file and report every problem in one run, one line each: file:line: field (with the "
        "check's name): what is wrong, what was given (never a secret or a ${VAR} value), what is allowed. "
        "Nothing is probed; state_dir is checked (it exists or can be created, is writable, and its database is "
        "readable), never created.",
        "0  the file is valid\n"
        "2  the file has problems (listed on stderr), has no checks, does not exist, state_dir is unusable, or bad "
        "usage",
        "pam-monitor validate --config pam-monitor.yaml\n"
        "PAM_MONITOR_CONFIG=pam-monitor.yaml pam-monitor validate",
    ),
    "notify": (
        "send a test notification to every configured sink (or one) and say what each answered",
        "Send one clearly marked test notification to every sink in alerts.sinks, or to the one named by --sink, "
        "straight through the sink's own code (not the outbox), and print what each answered: accepted, rejected "
        "with its HTTP status, or unreachable with the error type (never a URL or a secret). The test alert is "
        "PamMonitorTest, severity none, label test=\"true\", summary \"Test notification from pam-monitor (service "
        "...): if you see this, the <sink> sink works\". Alertmanager gets endsAt 5 minutes ahead, so it clears "
        "itself; PagerDuty opens an info-severity incident, to resolve by hand.",
        "0  every chosen sink accepted the test notification\n"
        "1  at least one chosen sink rejected it or could not be reached\n"
        "2  bad configuration, no sink configured, an unknown --sink, or bad usage",
        "pam-monitor notify --test --config pam-monitor.yaml\n"
        "pam-monitor notify --test --sink oncall-slack -c pam-monitor.yaml",
    ),
    "demo": (
        "start a demo backend and the daemon watching it (the default with no verb)",
        "Start the built-in demo backend (and a throwaway PostgreSQL unless --no-db) and the daemon watching it. "
        "Flip faults with POST /_faults/{name} on the demo backend to watch alerts fire, DELETE /_faults to heal.",
        "0  stopped by SIGTERM or Ctrl-C\n"
        "1  could not start: a port is taken\n"
        "2  bad option value (--listen, --interval) or bad usage",
        "pam-monitor demo\n"
        "pam-monitor demo --no-db --interval 2s --listen 127.0.0.1:9200",
    ),
    "discover": (
        "write a config with an auth_contract check for every secured operation of an OpenAPI document",
        "Read an OpenAPI 3 document (URL, file, or a backend's base URL) and write a config file that validates "
        "and runs as it stands: its target, and an auth_contract check for every operation that declares "
        "security, with forged tokens impersonating the user in the path and minimal request bodies.",
        "0  config written\n"
        "2  the document cannot be read or is not OpenAPI 3, or bad usage",
        "pam-monitor discover --openapi http://127.0.0.1:8000 -o pam-monitor.yaml\n"
        "pam-monitor discover --openapi openapi.json --base-url https://api.example.com -o pam-monitor.yaml",
    ),
}
_CONFIG_VERBS = ("run", "check", "validate", "notify")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks (exit codes, examples) and wraps the rest."""


def _verb_epilog(verb: str) -> str:
    _, _, exits, examples = _VERBS[verb]
    indent = "\n".join("  " + line for line in exits.splitlines())
    example = "\n".join("  " + line for line in examples.splitlines())
    return f"exit codes:\n{indent}\n\nexamples:\n{example}"


def _add_log_options(parser: argparse.ArgumentParser, *, top: bool, level_default: str) -> None:
    # On a verb the default is SUPPRESS, so that a value given before the verb is not overwritten by None.
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--log-format", choices=["json", "console"], default=default, help=_LOG_FORMAT_HELP)
    parser.add_argument("--log-level", choices=_LEVELS, default=default, metavar="LEVEL",
                        help=f"{', '.join(_LEVELS)} (default: {level_default})")


def _add_config_option(parser: argparse.ArgumentParser, *, top: bool) -> None:
    parser.add_argument("--config", "-c", type=Path, metavar="FILE",
                        default=_env_path("PAM_MONITOR_CONFIG") if top else argparse.SUPPRESS,
                        help="YAML config file (default: $PAM_MONITOR_CONFIG"
                             + (f", now {os.environ['PAM_MONITOR_CONFIG']})" if os.environ.get("PAM_MONITOR_CONFIG")
                                else ", unset)"))


def _add_shard_options(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--shard", default=None, metavar="I/N",
                       help=f"{what} shard I of N (0 <= I < N), by a consistent hash of the check name; I-of-N is "
                            "the same (default: $PAM_MONITOR_SHARD, else every check)")
    group.add_argument("--shards", type=int, default=None, metavar="N",
                       help=f"{what} this pod's shard of N: the pod name ($POD_NAME, else the hostname) ends in "
                            "-<k>, its StatefulSet ordinal, and pods 2s and 2s+1 run shard s (default: off)")
    parser.add_argument("--replicas-per-shard", type=int, default=DEFAULT_REPLICAS, metavar="R",
                        help=f"with --shards: pods R*s .. R*s+R-1 run shard s (default: {DEFAULT_REPLICAS})")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb (its help texts are the CLI's reference)."""
    parser = argparse.ArgumentParser(
        prog="pam-monitor", formatter_class=_Help,
        description="Continuous health monitoring for the PAM backend, its voice system and its database.\n"
                    "With no verb, runs the built-in demo.",
        epilog="--log-format, --log-level and --config work before or after the verb.\n"
               "exit codes: 0 ok; 1 a check failed, the daemon could not start or a sink failed its test;\n"
               "2 bad configuration or usage (state_dir not writable included); 3 the alert state database is\n"
               "unusable (run: corrupt, from a newer version, full disk).\n"
               "Run `pam-monitor VERB --help` for a verb's options, defaults, exit codes and examples.",
    )
    parser.add_argument("--version", action="version", version=f"pam-monitor {__version__}")
    _add_log_options(parser, top=True, level_default="depends on the verb")
    _add_config_option(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="VERB", title="verbs")

    def verb(name: str) -> argparse.ArgumentParser:
        line, description, _, _ = _VERBS[name]
        return sub.add_parser(name, help=line, description=textwrap.fill(description, 78),
                              epilog=_verb_epilog(name), formatter_class=_Help)

    run = verb("run")
    _add_config_option(run, top=False)
    _add_shard_options(run, "run only the checks of")
    run.add_argument("--listen", default=None, metavar="HOST:PORT",
                     help="where to serve /metrics, /status, ... (default: listen from the file, else 127.0.0.1:9108)")
    run.add_argument("--listen-base-port", type=int, default=None, metavar="PORT",
                     help="listen on PORT plus the shard's index, on the host of --listen (or of listen in the "
                          "file): several shards on one machine, such as the pam-monitor@.service template "
                          "(default: off)")
    _add_log_options(run, top=False, level_default="log_level from the file, else info")

    check = verb("check")
    _add_config_option(check, top=False)
    _add_shard_options(check, "run only the checks of")
    check.add_argument("--only", action="append", default=None, metavar="NAME",
                       help="run only this check; repeat for several (default: every enabled check)")
    check.add_argument("--format", choices=["table", "json"], default="table",
                       help="table: for people; json: the /status document's checks (default: table)")
    _add_log_options(check, top=False, level_default="warning")

    validate = verb("validate")
    _add_config_option(validate, top=False)
    _add_shard_options(validate, "count only the checks of")

    notify = verb("notify")
    _add_config_option(notify, top=False)
    notify.add_argument("--test", action="store_true", required=True,
                        help="send the test notification, the only thing notify does so far (required)")
    notify.add_argument("--sink", default=None, metavar="NAME",
                        help="only the sink with this name (its `name`, else its kind) (default: every sink)")
    _add_log_options(notify, top=False, level_default="warning")

    demo = verb("demo")
    demo.add_argument("--listen", default="127.0.0.1:9108", metavar="HOST:PORT",
                      help="where the daemon serves /metrics, /status and the page (default: 127.0.0.1:9108)")
    demo.add_argument("--target-port", type=int, default=8000,
                      help="port of the demo backend on 127.0.0.1 (default: 8000)")
    demo.add_argument("--interval", default="5s", help="check interval in the demo (default: 5s)")
    demo.add_argument("--no-db", action="store_true", help="do not start or use PostgreSQL (default: use it)")
    demo.add_argument("--alertmanager", default=None, metavar="URL",
                      help="also send the demo's alerts to this Alertmanager (default: none)")
    _add_log_options(demo, top=False, level_default="info")

    discover = verb("discover")
    discover.add_argument("--openapi", required=True, metavar="URL_OR_FILE",
                          help="URL or file of the OpenAPI (3.x) document, or the backend's base URL: "
                               "/openapi.json, /docs/openapi.json, /api/openapi.json, /swagger.json are tried "
                               "(required)")
    discover.add_argument("--base-url", default=None, metavar="URL",
                          help="the target's base_url (default: the document's servers, else the base URL given "
                               "to --openapi, else ${BACKEND_URL})")
    discover.add_argument("--target", default="backend",
                          help="target name to use in the generated checks (default: backend)")
    discover.add_argument("--journeys", action="store_true",
                          help="also write a tenant_isolation check (as identity monitor_user) for every GET of a "
                               "user's resource (a user-id path parameter), and the identities block to define "
                               "(default: off)")
    discover.add_argument("--output", "-o", type=Path, default=None, metavar="FILE",
                          help="file to write (default: stdout)")
    _add_log_options(discover, top=False, level_default="warning")
    return parser


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


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
    if args.command not in _CONFIG_VERBS and args.config not in (None, _env_path("PAM_MONITOR_CONFIG")):
        parser.error(f"--config does not apply to {args.command}")
    handlers = {"run": _cmd_run, "check": _cmd_check, "validate": _cmd_validate, "notify": _cmd_notify,
                "demo": _cmd_demo, "discover": _cmd_discover}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130


def _load(args: argparse.Namespace, err: TextIO, *, require_checks: bool = True) -> Config | None:
    if args.config is None:
        print("pam-monitor: no config file; pass --config FILE or set PAM_MONITOR_CONFIG "
              "(see examples/pam-monitor.yaml)", file=err)
        return None
    try:
        # Only run, check and validate take a shard; notify sends to the sinks whatever the shard.
        shard = args.resolved_shard = resolve_shard(args) if hasattr(args, "replicas_per_shard") else None
        config = load_config(args.config, listen=getattr(args, "listen", None), shard=shard,
                             require_checks=require_checks)
        base = getattr(args, "listen_base_port", None)
        if base is not None:
            # The per-shard address becomes the --listen of this process, so a reload keeps it.
            args.listen = shard_listen(config.listen, base, shard)
            config = config.model_copy(update={"listen": args.listen})
        return config
    except ValueError as exc:
        print(f"pam-monitor: {exc}", file=err)
        return None
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        print(f"pam-monitor: {len(exc.problems)} problem(s) in the configuration; nothing was started", file=err)
        return None


def resolve_shard(args: argparse.Namespace, environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    """The shard this process runs: --shard I/N, else --shards N with the pod's ordinal, else $PAM_MONITOR_SHARD,
    else None (every check). Raise ValueError with one line naming the fix."""
    env = os.environ if environ is None else environ
    if getattr(args, "shard", None):
        return parse_shard(args.shard)
    count = getattr(args, "shards", None)
    if count is not None:
        pod = env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname()
        return shard_from_ordinal(pod, count, args.replicas_per_shard)
    if env.get(SHARD_ENV):
        try:
            return parse_shard(env[SHARD_ENV])
        except ValueError:
            raise ValueError(f"{SHARD_ENV} must be i/n (or i-of-n) with 0 <= i < n, such as 0/2, "
                             f"got {env[SHARD_ENV]!r}") from None
    return None


def shard_listen(listen: str, base: int, shard: tuple[int, int] | None) -> str:
    """`host:port` with port = base + the shard's index (--listen-base-port), on the host of `listen`."""
    if shard is None:
        raise ValueError("--listen-base-port needs a shard: pass --shard I/N or --shards N, or set PAM_MONITOR_SHARD")
    port = base + shard[0]
    if not (base > 0 and port <= 65535):
        raise ValueError(f"--listen-base-port {base} plus shard {shard[0]} is not a port (1..65535)")
    host = parse_listen(listen)[0]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _logging(args: argparse.Namespace, config: Config) -> Redactor:
    redactor = configure_logging(args.log_level or config.log_level, _log_format(args, sys.stdout))
    redactor.update(collect_secrets(config))
    return redactor


def _cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args, sys.stderr)
    if config is None:
        return EXIT_CONFIG
    from alerts.store import inspect

    problems = inspect(config.state_dir)
    if problems:
        where = _key_line(args.config, "state_dir")
        for problem in problems:
            print(f"{where}: state_dir: {problem}", file=sys.stderr)
        print(f"pam-monitor: {len(problems)} problem(s) in the configuration; nothing was started", file=sys.stderr)
        return EXIT_CONFIG
    enabled = sum(1 for c in config.checks if c.enabled)
    shard = f" in shard {args.resolved_shard[0]}/{args.resolved_shard[1]}" if args.resolved_shard else ""
    print(f"{args.config}: ok: {enabled} checks{shard} ({len(config.checks) - enabled} disabled), "
          f"{len(config.targets)} targets, {len(config.alerts.sinks)} sinks")
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
    config = _load(args, sys.stderr)
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


def _cmd_notify(args: argparse.Namespace) -> int:
    from alerts.notify import chosen_sinks, send_tests

    config = _load(args, sys.stderr, require_checks=False)
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo.cli import run_demo

    # A person at a terminal gets readable lines; a pipe or a file gets JSON, as from `run`.
    configure_logging(args.log_level or "info", args.log_format or ("console" if sys.stdout.isatty() else "json"))
    return run_demo(args)


def _cmd_discover(args: argparse.Namespace) -> int:
    from monitor.discover import run_discover

    configure_logging(args.log_level or "warning", _log_format(args, sys.stderr), stream=sys.stderr)
    return run_discover(args)


if __name__ == "__main__":
    sys.exit(main())
