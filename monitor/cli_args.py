"""The command line's grammar: every verb's options, help, exit codes and examples; the shard a process runs."""

from __future__ import annotations

import argparse
import os
import re
import socket
import textwrap
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from monitor import __version__
from monitor.core.config import DEFAULT_REPLICAS, NAME_PATTERN, parse_listen, parse_shard, shard_from_ordinal
from monitor.core.durations import parse_duration

SHARD_ENV = "PAM_MONITOR_SHARD"


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
        "0  the file is valid (an unset ${VAR} is a warning on stderr, unless --strict)\n"
        "2  the file has problems (listed on stderr), has no checks, does not exist, state_dir is unusable, an "
        "unset ${VAR} with --strict, or bad usage",
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
        "2  bad option value, or the --database-url database cannot be used safely (a schema pam_monitor_demo the "
        "demo did not make)",
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
    "init": (
        "write a commented starter config file (from your OpenAPI document with --openapi)",
        "Write a commented starter config file that validates as written: the example pam-monitor ships, whose "
        "secrets are ${VAR} references read from the environment, and print the variables to set. With --openapi, "
        "its targets and checks are what discover finds in the document (an auth_contract check per secured "
        "operation). An existing file is kept unless --force.",
        "0  file written\n"
        "1  the file exists (pass --force) or cannot be written\n"
        "2  the OpenAPI document cannot be read or is not OpenAPI 3, or bad usage",
        "pam-monitor init\n"
        "pam-monitor init --openapi http://127.0.0.1:8000 my-backend.yaml",
    ),
    "rules": (
        "write Prometheus recording and alerting rules for the config's SLOs (burn-rate alerts)",
        "Write the Prometheus rules that watch every SLO of the config file (a check's `slo`, or a group under "
        "`slos:`): the error ratio recorded over each window its burn-rate alerts use, and one ErrorBudgetBurn "
        "alert per burn window (labels slo, window, severity). Load the file into Prometheus beside "
        "deploy/prometheus/rules.yml; check it with promtool check rules.",
        "0  rules written (an empty group list when the config has no SLO)\n"
        "2  bad configuration, no config file, or bad usage",
        "pam-monitor rules --config pam-monitor.yaml -o slo-rules.yml\n"
        "pam-monitor rules -c pam-monitor.yaml --job pam-monitor-prod",
    ),
}
CONFIG_VERBS = ("run", "check", "validate", "notify", "rules")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks (exit codes, examples) and wraps the rest."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit 2 (not the usage block)."""

    def error(self, message: str) -> NoReturn:
        """Print `prog: error: message` (argparse's own line, without the usage block above it) and exit 2."""
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


# Option value types: a bad value is one line naming the option and what it takes, never a traceback.
def port(text: str) -> int:
    """A TCP port, 1..65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (and at most a million: no count here is larger)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 1000000, got {text!r}")
    return value


def listen_address(text: str) -> str:
    """host:port, as `listen:` in the file takes it."""
    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def job_name(text: str) -> str:
    """A Prometheus job name as the rules select on it (`job="..."`): not empty, printable, no quote or backslash."""
    if not text or not text.isprintable() or any(c in text for c in '"\\'):
        raise argparse.ArgumentTypeError(f"must be the Prometheus job that scrapes pam-monitor (printable, no quotes), "
                                         f"got {text!r}")
    return text


DEMO_MIN_INTERVAL, DEMO_MAX_INTERVAL = 1.0, 3600.0


def demo_interval(text: str) -> str:
    """A check interval for the demo: a duration from 1 s to 1 h (`5s`, `500ms` is too short, `2m`)."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None
    if not DEMO_MIN_INTERVAL <= seconds <= DEMO_MAX_INTERVAL:
        raise argparse.ArgumentTypeError(f"must be from 1s to 1h, such as 5s, got {text!r}")
    return text


def http_url(text: str) -> str:
    """An http:// or https:// URL with a host."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {text!r}")
    return text


def cors_origin(text: str) -> str:
    """An origin: http:// or https://, a host and maybe a port, no path."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise argparse.ArgumentTypeError(f"must be an origin such as https://app.example.com (no path), got {text!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()


def shard_spec(text: str) -> str:
    """I/N or I-of-N with 0 <= I < N (kept as text: resolve_shard parses it again with the environment's)."""
    try:
        parse_shard(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be i/n (or i-of-n) with 0 <= i < n, such as 0/2, got {text!r}") \
            from None
    return text


def config_name(text: str) -> str:
    """A name as the config file takes it (a target's, a check's)."""
    if not re.fullmatch(NAME_PATTERN, text):
        raise argparse.ArgumentTypeError(f"must be a name of letters, digits, _ . - (starting with a letter or _, "
                                         f"at most 64), got {text!r}")
    return text


def output_file(text: str) -> Path:
    """A file to write: not a directory, in a directory that exists."""
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"must be a file to write, got {text!r}")
    if not path.absolute().parent.is_dir():
        raise argparse.ArgumentTypeError(f"the directory of {text!r} does not exist; create it first")
    return path


def postgres_url(text: str) -> str:
    """A postgresql:// URL or a `host=... dbname=...` conninfo string; never echoed back (it may hold a password)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        parsed = conninfo_to_dict(text)
    except ProgrammingError:
        parsed = {}
    if not parsed or not ("://" in text or "=" in text):
        raise argparse.ArgumentTypeError("must be a postgresql://user@host:port/dbname URL or a conninfo string")
    return text


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
                        default=env_path("PAM_MONITOR_CONFIG") if top else argparse.SUPPRESS,
                        help="YAML config file (default: $PAM_MONITOR_CONFIG"
                             + (f", now {os.environ['PAM_MONITOR_CONFIG']})" if os.environ.get("PAM_MONITOR_CONFIG")
                                else ", unset)"))


def _add_shard_options(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--shard", type=shard_spec, default=None, metavar="I/N",
                       help=f"{what} shard I of N (0 <= I < N), by a consistent hash of the check name; I-of-N is "
                            "the same (default: $PAM_MONITOR_SHARD, else every check)")
    group.add_argument("--shards", type=positive_int, default=None, metavar="N",
                       help=f"{what} this pod's shard of N: the pod name ($POD_NAME, else the hostname) ends in "
                            "-<k>, its StatefulSet ordinal, and pods 2s and 2s+1 run shard s (default: off)")
    parser.add_argument("--replicas-per-shard", type=positive_int, default=DEFAULT_REPLICAS, metavar="R",
                        help=f"with --shards: pods R*s .. R*s+R-1 run shard s (default: {DEFAULT_REPLICAS})")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb (its help texts are the CLI's reference)."""
    parser = _Parser(
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
    run.add_argument("--listen", type=listen_address, default=None, metavar="HOST:PORT",
                     help="where to serve /metrics, /status, ... (default: listen from the file, else 127.0.0.1:9108)")
    run.add_argument("--listen-base-port", type=port, default=None, metavar="PORT",
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
    validate.add_argument("--strict", action="store_true",
                          help="an unset ${VAR} (or unreadable ${file:...}) is a problem, exit 2 (default: a "
                               "warning, exit 0, when the file is otherwise valid: the variables are needed only "
                               "where the checks run)")

    notify = verb("notify")
    _add_config_option(notify, top=False)
    notify.add_argument("--test", action="store_true", required=True,
                        help="send the test notification, the only thing notify does so far (required)")
    notify.add_argument("--sink", default=None, metavar="NAME",
                        help="only the sink with this name (its `name`, else its kind) (default: every sink)")
    _add_log_options(notify, top=False, level_default="warning")

    rules = verb("rules")
    _add_config_option(rules, top=False)
    rules.add_argument("--job", type=job_name, default="pam-monitor",
                       help="the Prometheus job that scrapes pam-monitor (default: pam-monitor)")
    rules.add_argument("--output", "-o", type=Path, default=None, metavar="FILE",
                       help="file to write (default: stdout)")

    demo = verb("demo")
    demo.add_argument("--listen", type=listen_address, default="127.0.0.1:9108", metavar="HOST:PORT",
                      help="where the daemon serves /metrics, /status and the page (default: 127.0.0.1:9108)")
    demo.add_argument("--target-port", type=port, default=8000,
                      help="port of the demo backend on 127.0.0.1 (default: 8000)")
    demo.add_argument("--interval", type=demo_interval, default="5s",
                      help="check interval in the demo, 1s to 1h (default: 5s)")
    where = demo.add_mutually_exclusive_group()
    where.add_argument("--no-db", action="store_true", help="do not start or use PostgreSQL (default: use it)")
    where.add_argument("--database-url", type=postgres_url, default=None, metavar="URL",
                       help="use this existing database instead of a throwaway cluster; the demo then creates, "
                            "changes and drops only a schema of its own, pam_monitor_demo, and no role "
                            "($DATABASE_URL is never used without this option) (default: a throwaway cluster)")
    demo.add_argument("--alertmanager", type=http_url, default=None, metavar="URL",
                      help="also send the demo's alerts to this Alertmanager (default: none)")
    _add_log_options(demo, top=False, level_default="info")

    discover = verb("discover")
    discover.add_argument("--openapi", required=True, metavar="URL_OR_FILE",
                          help="URL or file of the OpenAPI (3.x) document, or the backend's base URL: "
                               "/openapi.json, /docs/openapi.json, /api/openapi.json, /swagger.json are tried "
                               "(required)")
    discover.add_argument("--base-url", type=http_url, default=None, metavar="URL",
                          help="the target's base_url (default: the document's servers, else the base URL given "
                               "to --openapi, else ${BACKEND_URL})")
    discover.add_argument("--target", type=config_name, default="backend",
                          help="target name to use in the generated checks (default: backend)")
    discover.add_argument("--journeys", action="store_true",
                          help="also write a tenant_isolation check (as identity monitor_user) for every GET of a "
                               "user's resource (a user-id path parameter), and the identities block to define "
                               "(default: off)")
    discover.add_argument("--cors-origin", type=cors_origin, default=None, metavar="ORIGIN",
                          help="the frontend's origin (e.g. https://app.example.com): every generated check also "
                               "judges CORS as a browser there would, with credentials and Authorization "
                               "(default: off)")
    discover.add_argument("--output", "-o", type=output_file, default=None, metavar="FILE",
                          help="file to write (default: stdout)")
    _add_log_options(discover, top=False, level_default="warning")

    init = verb("init")
    init.add_argument("path", nargs="?", type=Path, default=Path("pam-monitor.yaml"), metavar="PATH",
                      help="file to write (default: pam-monitor.yaml)")
    init.add_argument("--openapi", default=None, metavar="URL_OR_FILE",
                      help="take the targets and checks from this OpenAPI (3.x) document, file or backend base URL, "
                           "as discover does (default: the example's)")
    init.add_argument("--force", action="store_true", help="overwrite PATH if it exists (default: keep it)")
    return parser


def env_path(name: str) -> Path | None:
    """The path in environment variable `name`, None when it is unset or empty."""
    value = os.environ.get(name)
    return Path(value) if value else None


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


