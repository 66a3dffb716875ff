"""One command that measures the daemon under N http checks and prints a table (issue 2).

    python -m bench.run --checks 1000 --interval 2s --duration 60s --compare-blackbox --repeat 3

Starts a static target on 127.0.0.1 (nginx from Debian; fallback: the asyncio or uvicorn server in bench/target.py),
pins it to one CPU and the prober under test to the other, runs `pam-monitor run` with N http checks, then
(with --compare-blackbox) Debian's blackbox_exporter driven by Prometheus with N targets at the same interval,
against the same target, one after the other. It reports per-process CPU per probe, max RSS, scheduling lateness
from the daemon's histogram, skipped runs, /metrics scrape time and size, and SIGTERM exit time and code.
Every child runs in its own process group and is killed on the way out, even on error.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
PROMETHEUS = "/usr/bin/prometheus"
METRICS_SCRAPES = 7
SCRAPE_GAP_S = 0.6
"""Pause before each of those GETs: longer than the daemon's METRICS_TTL (monitor/server.py), so each one is a lone
scrape that renders its body, not one served from a render shared with the GET before it."""


# ---------------------------------------------------------------------------------------------- small helpers


def parse_seconds(text: str) -> float:
    """'2s', '500ms', '1m' or a bare number of seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use 2s, 500ms, 1m)")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match.group(2)]


def go_duration(seconds: float) -> str:
    """A duration Prometheus and Go accept ('2s', '500ms')."""
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes, float]:
    """(status, body, seconds) of one GET on a fresh connection to 127.0.0.1:port."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - t0
    finally:
        conn.close()


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], limit: float = 30.0) -> None:
    """Wait (bounded) until GET path answers 200, or raise if the process died or time ran out."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before answering {path}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if http_get(port, path, timeout=2.0)[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered 200 on {HOST}:{port}{path} within {limit:.0f} s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS), in bytes; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not None (None if there are none)."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(present) if present else None


# ---------------------------------------------------------------------------------------------- Prometheus text


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str, wanted: Sequence[str]) -> Samples:
    """Samples of the families whose names start with one of `wanted` (no timestamps expected)."""
    samples: Samples = {}
    prefixes = tuple(wanted)
    for line in text.splitlines():
        if not line.startswith(prefixes):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        samples[(name, frozenset(_LABEL.findall(labels)))] = float(value)
    return samples


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of every sample of `name` whose labels include `match`."""
    want = set(match.items())
    return sum(v for (n, labels), v in samples.items() if n == name and want <= labels)


def histogram_buckets(samples: Samples, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a label-less histogram, sorted, +Inf last."""
    out = []
    for (n, labels), value in samples.items():
        if n == f"{name}_bucket":
            le = dict(labels)["le"]
            out.append((math.inf if le == "+Inf" else float(le), value))
    return sorted(out)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds the rank."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # like Prometheus: the highest finite bound when the rank is in +Inf
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


# ---------------------------------------------------------------------------------------------- processes


class Children:
    """Every process this bench starts: each in its own session, all killed on exit (TERM, then KILL)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cpus = sorted(os.sched_getaffinity(0))
        self.taskset = shutil.which("taskset")

    def start(self, name: str, argv: Sequence[str], *, cpu: int | None = None, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `argv` pinned to `cpu` (when taskset and that CPU exist), output to <workdir>/<name>.log."""
        cmd = list(argv)
        if cpu is not None and self.taskset and cpu in self.cpus and len(self.cpus) > 1:
            cmd = [self.taskset, "-c", str(cpu), *cmd]
        log = (self.workdir / f"{name}.log").open("wb")
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=cwd or self.workdir, env=env, start_new_session=True)
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines of a child's output, for error messages."""
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        """TERM the process group, wait up to `grace`, then KILL it."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        # Children of the leader (none expected) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        """Stop every child still running, newest first."""
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc)


def real_pid(proc: subprocess.Popen[bytes]) -> int:
    """The pid to measure: taskset execs in place, so the Popen pid is the program's."""
    return proc.pid


# ---------------------------------------------------------------------------------------------- the target


@dataclass
class Target:
    """A running target: where /health is and how to read its counters."""

    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    note: str = ""

    @property
    def health_url(self) -> str:
        """Base URL of the target."""
        return f"http://{HOST}:{self.port}"

    def counters(self) -> tuple[int, int]:
        """(connections accepted, requests served) so far."""
        status, body, _ = http_get(self.port, "/__count")
        if status != 200:
            raise RuntimeError(f"target counters answered {status}")
        numbers = body.decode().splitlines()[2].split()
        return int(numbers[0]), int(numbers[2])


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {{
        listen {host}:{port} backlog=4096;
        location = /health {{ default_type application/json; return 200 '{{"status":"healthy"}}'; }}
        location = /__count {{ stub_status; }}
    }}
}}
"""


def start_target(kind: str, children: Children, cpu: int | None) -> Target:
    """Start the requested target (nginx falls back to the builtin server when nginx is not installed)."""
    port = free_port()
    note = ""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if kind == "nginx" and nginx is None:
        kind, note = "builtin", "nginx not installed (apt-get install nginx-light); fell back to the asyncio target"
    if kind == "nginx":
        conf = children.workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=children.workdir, host=HOST, port=port))
        proc = children.start("target", [str(nginx), "-p", str(children.workdir), "-c", str(conf)], cpu=cpu)
    else:
        argv = [sys.executable, "-m", "bench.target", "--kind", kind, "--port", str(port)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        proc = children.start("target", argv, cpu=cpu, env=env)
    try:
        wait_http(port, "/health", proc)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{children.log_tail('target')}") from None
    return Target(kind, port, proc, note)


# ---------------------------------------------------------------------------------------------- measurements


@dataclass
class Figures:
    """One prober's figures over one measurement window."""

    prober: str
    checks: int
    interval_s: float
    window_s: float = 0.0
    probes: int = 0
    probes_expected: int = 0
    failed_probes: int | None = None
    cpu_s: float = 0.0
    cpu_ms_per_probe: float | None = None
    cpu_s_per_1000: float | None = None
    target_requests: int = 0
    target_connections: int = 0
    connections_per_probe: float | None = None
    rss_max_mb: float = 0.0
    lateness_p50_ms: float | None = None
    lateness_p99_ms: float | None = None
    lateness_over_20ms: int | None = None
    skipped_runs: float | None = None
    skipped_saturated: float | None = None
    skipped_total: float | None = None
    lag_p99_ms: float | None = None
    target_alerts: int | None = None
    monitor_saturated: float | None = None
    scrapes_ok: int | None = None
    scrapes_refused: int | None = None
    scrape_errors: int | None = None
    metrics_ms: float | None = None
    metrics_kb: float | None = None
    sigterm_exit_s: float | None = None
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)

    def finish(self) -> None:
        """Derive the per-probe figures."""
        if self.probes > 0:
            self.cpu_ms_per_probe = self.cpu_s * 1000 / self.probes
            self.cpu_s_per_1000 = self.cpu_s * 1000 / self.probes
            if self.target_connections:
                self.connections_per_probe = self.target_connections / self.probes
        self.probes_expected = round(self.checks * self.window_s / self.interval_s)


def sample_window(pid: int, duration: float, alive: Callable[[], bool]) -> int:
    """Sleep `duration` in steps, sampling RSS; returns the max RSS in bytes."""
    t0 = time.monotonic()
    top = rss_bytes(pid)
    steps = max(1, int(duration / 0.5))
    for i in range(steps):
        remaining = t0 + duration * (i + 1) / steps - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        if not alive():
            raise RuntimeError("the measured process died during the window")
        top = max(top, rss_bytes(pid))
    return top


def daemon_config(checks: int, interval: float, target: Target, state_dir: Path, max_in_flight: int | None,
                  keep_alive: bool = False) -> str:
    """A config file (JSON, which YAML reads) with `checks` http checks on one target."""
    timeout = min(1.0, interval * 0.5)
    doc: dict[str, Any] = {
        "service": "bench",
        "state_dir": str(state_dir),
        "log_level": "warning",
        "defaults": {"interval": f"{interval}s", "timeout": f"{timeout}s"},
        "targets": {"nginx": {"base_url": target.health_url}},
        "checks": [
            {"name": f"bench_{i:05d}", "kind": "http", "target": "nginx", "path": "/health",
             "expect": {"status": [200]}}
            for i in range(checks)
        ],
    }
    doc["http"] = {"keep_alive": keep_alive}
    if max_in_flight is not None:
        doc["http"]["max_in_flight"] = max_in_flight
    return json.dumps(doc, indent=1)


DAEMON_FAMILIES = (
    "pam_monitor_check_results_total",
    "pam_monitor_scheduler_lateness_seconds",
    "pam_monitor_scheduler_skipped_runs_total",
    "pam_monitor_event_loop_lag_seconds",
    "pam_monitor_alerts_firing",
)
MONITOR_ALERTS = ("MonitorSaturated", "MonitorWatchdog")


def measure_daemon(args: argparse.Namespace, children: Children, target: Target, run: int | str) -> Figures:
    """Start `pam-monitor run` with N checks, warm up one interval, measure, scrape, SIGTERM."""
    mode = "keep-alive" if args.keep_alive else "fresh conn"
    fig = Figures(f"pam-monitor ({mode}){'' if args.variant is None else f' [{args.variant}]'}", args.checks,
                  args.interval)
    workdir = children.workdir / f"daemon-{run}"
    workdir.mkdir()
    config = workdir / "bench.yaml"
    config.write_text(daemon_config(args.checks, args.interval, target, workdir / "state", args.max_in_flight,
                                    args.keep_alive))
    port = free_port()
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    if args.variant is None:
        argv = [sys.executable, "-m", "monitor.cli"]
    else:
        argv = [sys.executable, "-m", "bench.variants", args.variant]
    argv += ["run", "--config", str(config), "--listen", f"{HOST}:{port}", "--log-level", "warning"]
    name = f"daemon-{run}"
    proc = children.start(name, argv, cpu=args.client_cpu, cwd=workdir, env=env)
    try:
        wait_http(port, "/healthz", proc, limit=60)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{children.log_tail(name)}") from None
    pid = real_pid(proc)
    if args.profile:
        profiler = _start_profile(children, pid, args, run)
        fig.notes.append(f"py-spy raw profile: {children.workdir / f'profile-{run}.txt'}")
    time.sleep(args.interval + 0.5)  # every check has started once: first runs are spread over one interval

    _, body_a, _ = http_get(port, "/metrics")
    conns_a, reqs_a = target.counters()
    scrapers = _start_scrapers(args, children, port, run)
    cpu_a, t_a = cpu_seconds(pid), time.monotonic()
    top = sample_window(pid, args.duration, lambda: proc.poll() is None)
    cpu_b, t_b = cpu_seconds(pid), time.monotonic()
    conns_b, reqs_b = target.counters()
    if scrapers is not None:
        _finish_scrapers(fig, children, scrapers, run)
    _, body_b, _ = http_get(port, "/metrics")
    if args.profile:
        with contextlib.suppress(subprocess.TimeoutExpired):
            profiler.wait(timeout=args.interval + 30)  # py-spy writes its file when its duration is over

    a = parse_metrics(body_a.decode(), DAEMON_FAMILIES)
    b = parse_metrics(body_b.decode(), DAEMON_FAMILIES)
    fig.window_s = t_b - t_a
    fig.cpu_s = cpu_b - cpu_a
    fig.probes = round(total(b, "pam_monitor_check_results_total") - total(a, "pam_monitor_check_results_total"))
    ok = total(b, "pam_monitor_check_results_total", outcome="ok") - total(
        a, "pam_monitor_check_results_total", outcome="ok")
    fig.failed_probes = fig.probes - round(ok)
    fig.target_requests, fig.target_connections = reqs_b - reqs_a - 1, conns_b - conns_a
    fig.rss_max_mb = top / 2**20
    hist_a = dict(histogram_buckets(a, "pam_monitor_scheduler_lateness_seconds"))
    delta = [(le, n - hist_a.get(le, 0.0)) for le, n in histogram_buckets(b, "pam_monitor_scheduler_lateness_seconds")]
    p50, p99 = histogram_quantile(0.5, delta), histogram_quantile(0.99, delta)
    fig.lateness_p50_ms = None if p50 is None else p50 * 1000
    fig.lateness_p99_ms = None if p99 is None else p99 * 1000
    under_20 = next((n for le, n in delta if le == 0.02), None)
    fig.lateness_over_20ms = None if under_20 is None or not delta else round(delta[-1][1] - under_20)
    fig.skipped_runs = total(b, "pam_monitor_scheduler_skipped_runs_total") - total(
        a, "pam_monitor_scheduler_skipped_runs_total")
    fig.skipped_total = total(b, "pam_monitor_scheduler_skipped_runs_total")
    fig.skipped_saturated = total(b, "pam_monitor_scheduler_skipped_runs_total", reason="saturated") - total(
        a, "pam_monitor_scheduler_skipped_runs_total", reason="saturated")
    lag_a = dict(histogram_buckets(a, "pam_monitor_event_loop_lag_seconds"))
    lag = [(le, n - lag_a.get(le, 0.0)) for le, n in histogram_buckets(b, "pam_monitor_event_loop_lag_seconds")]
    lag_p99 = histogram_quantile(0.99, lag)
    fig.lag_p99_ms = None if lag_p99 is None else lag_p99 * 1000
    fig.monitor_saturated = total(b, "pam_monitor_alerts_firing", alertname="MonitorSaturated")

    times, size = [], 0
    for _ in range(METRICS_SCRAPES):
        time.sleep(SCRAPE_GAP_S)
        status, body, seconds = http_get(port, "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        times.append(seconds)
        size = len(body)
    fig.metrics_ms = statistics.median(times) * 1000
    fig.metrics_kb = size / 1024

    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        fig.exit_code = proc.wait(timeout=30)
        fig.sigterm_exit_s = time.monotonic() - t0
    except subprocess.TimeoutExpired:
        fig.notes.append("did not exit within 30 s of SIGTERM; killed")
        children.stop(proc)
    lines = children.log_tail(name, 1_000_000).splitlines()
    warnings = sum(1 for line in lines if '"level": "warning"' in line or '"level":"warning"' in line)
    fired = [json.loads(line) for line in lines if '"alert.fired"' in line or '"alert.flapping"' in line]
    fig.target_alerts = sum(1 for event in fired if event.get("alert") not in MONITOR_ALERTS)
    if warnings:
        fig.notes.append(f"{warnings} warning log lines (see {children.workdir / (name + '.log')})")
    fig.finish()
    return fig


def _start_scrapers(args: argparse.Namespace, children: Children, port: int,
                    run: int | str) -> subprocess.Popen[bytes] | None:
    """--scrapers N: N concurrent /metrics scrapers for the window, on the target's CPU (bench/scrapers.py)."""
    if not args.scrapers:
        return None
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return children.start(f"scrapers-{run}", [sys.executable, "-m", "bench.scrapers", "--url",
                                              f"http://{HOST}:{port}/metrics", "--concurrency", str(args.scrapers),
                                              "--duration", str(args.duration)], cpu=args.server_cpu, env=env)


def _finish_scrapers(fig: Figures, children: Children, proc: subprocess.Popen[bytes],
                     run: int | str) -> None:
    """Wait for the scrapers (bounded) and read their counts."""
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        children.stop(proc)
    lines = [line for line in children.log_tail(f"scrapers-{run}", 50).splitlines() if line.startswith("{")]
    if not lines:
        fig.notes.append(f"scrapers printed no result: {children.log_tail(f'scrapers-{run}', 5)}")
        return
    counts: dict[str, int] = json.loads(lines[-1])["scrapes"]
    fig.scrapes_ok = counts.get("200", 0)
    fig.scrapes_refused = counts.get("503", 0)
    fig.scrape_errors = sum(n for code, n in counts.items() if code not in ("200", "503"))


def _start_profile(children: Children, pid: int, args: argparse.Namespace, run: int | str
                   ) -> subprocess.Popen[bytes]:
    """py-spy sampling the daemon from now until just before the window ends (it writes its file on exit)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = children.workdir / f"profile-{run}.txt"
    seconds = max(1, int(args.duration + args.interval))
    return children.start(f"py-spy-{run}", [py_spy, "record", "--pid", str(pid), "--duration", str(seconds),
                                            "--format", "raw", "--output", str(out), "--rate", "250", "--nonblocking"],
                          cpu=args.server_cpu)


BLACKBOX_CONF = """\
modules:
  http_2xx:
    prober: http
    timeout: {timeout}
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
"""


def prometheus_config(checks: int, interval: float, target: Target, exporter_port: int) -> str:
    """Prometheus scraping the exporter's /probe for `checks` distinct target URLs, the usual relabelling."""
    targets = [f"{target.health_url}/health?bench={i:05d}" for i in range(checks)]
    doc = {
        # blackbox_exporter gives a probe the scrape timeout minus 0.5 s (--timeout-offset): ask for the daemon's
        # timeout plus that offset, so both probers get the same time (1 s at 2 s; a 0 s probe timeout below).
        "global": {"scrape_interval": go_duration(interval),
                   "scrape_timeout": go_duration(min(interval, min(1.0, interval * 0.5) + 0.5))},
        "scrape_configs": [{
            "job_name": "blackbox",
            "metrics_path": "/probe",
            "params": {"module": ["http_2xx"]},
            "static_configs": [{"targets": targets}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"{HOST}:{exporter_port}"},
            ],
        }],
    }
    return json.dumps(doc, indent=1)


def prom_query(port: int, query: str) -> float | None:
    """One instant query against the bench's Prometheus; the first sample's value or None."""
    from urllib.parse import quote

    status, body, _ = http_get(port, f"/api/v1/query?query={quote(query)}")
    if status != 200:
        return None
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def measure_blackbox(args: argparse.Namespace, children: Children, target: Target, run: int) -> Figures:
    """blackbox_exporter probing the same target N times per interval, driven by Prometheus."""
    fig = Figures("blackbox_exporter", args.checks, args.interval)
    workdir = children.workdir / f"blackbox-{run}"
    workdir.mkdir()
    (workdir / "blackbox.yml").write_text(BLACKBOX_CONF.format(timeout=go_duration(min(1.0, args.interval * 0.5))))
    bb_port, prom_port = free_port(), free_port()
    exporter = children.start(
        f"blackbox-{run}",
        [BLACKBOX, f"--config.file={workdir / 'blackbox.yml'}", f"--web.listen-address={HOST}:{bb_port}",
         "--log.level=warn"],
        cpu=args.client_cpu, cwd=workdir)
    wait_http(bb_port, "/metrics", exporter)
    (workdir / "prometheus.yml").write_text(prometheus_config(args.checks, args.interval, target, bb_port))
    prom = children.start(
        f"prometheus-{run}",
        [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address={HOST}:{prom_port}", "--log.level=warn", "--storage.tsdb.retention.time=1h"],
        cpu=args.server_cpu, cwd=workdir)
    try:
        wait_http(prom_port, "/-/ready", prom, limit=60)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{children.log_tail(f'prometheus-{run}')}") from None
    # Prometheus spreads each target's first scrape over one interval; one more interval lets it settle.
    time.sleep(args.interval * 2 + 0.5)
    pid = real_pid(exporter)
    conns_a, reqs_a = target.counters()
    cpu_a, t_a = cpu_seconds(pid), time.monotonic()
    top = sample_window(pid, args.duration, lambda: exporter.poll() is None)
    cpu_b, t_b = cpu_seconds(pid), time.monotonic()
    conns_b, reqs_b = target.counters()
    fig.window_s = t_b - t_a
    fig.cpu_s = cpu_b - cpu_a
    fig.target_requests, fig.target_connections = reqs_b - reqs_a - 1, conns_b - conns_a
    # Each probe is one request to the target (the exporter does not keep connections alive).
    fig.probes = fig.target_requests
    fig.rss_max_mb = top / 2**20
    succeeded = prom_query(prom_port, "sum(probe_success)")
    up = prom_query(prom_port, "count(up == 1)")
    if succeeded is not None:
        fig.failed_probes = None
        fig.notes.append(f"last scrape: {succeeded:.0f} of {args.checks} probes succeeded, {up or 0:.0f} targets up")
    # Prometheus does not scrape itself here: read its own summary of actual scrape intervals directly.
    own = parse_metrics(http_get(prom_port, "/metrics")[1].decode(), ("prometheus_target_interval_length_seconds",))
    late = [v for (_, labels), v in own.items() if ("quantile", "0.99") in labels]
    if late:
        fig.notes.append(f"Prometheus' actual scrape interval p99 {max(late):.4f} s (its own summary, for context)")
    children.stop(prom)
    t0 = time.monotonic()
    exporter.send_signal(signal.SIGTERM)
    try:
        exporter.wait(timeout=30)
        fig.sigterm_exit_s = time.monotonic() - t0
        fig.exit_code = exporter.returncode
    except subprocess.TimeoutExpired:
        children.stop(exporter)
    fig.finish()
    return fig


# ---------------------------------------------------------------------------------------------- report


COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (field, heading, format)
    ("prober", "prober", "{}"),
    ("checks", "checks", "{:,}"),
    ("interval_s", "interval s", "{:g}"),
    ("probes", "probes in window", "{:,.0f}"),
    ("probes_expected", "expected", "{:,.0f}"),
    ("failed_probes", "not ok", "{:,.0f}"),
    ("cpu_ms_per_probe", "CPU ms/probe (= CPU s/1,000 probes)", "{:.3f}"),
    ("connections_per_probe", "new conns/probe", "{:.3f}"),
    ("rss_max_mb", "RSS max MB", "{:.1f}"),
    ("lateness_p50_ms", "lateness p50 ms", "{:.2f}"),
    ("lateness_p99_ms", "lateness p99 ms", "{:.2f}"),
    ("lateness_over_20ms", "runs >20 ms late", "{:,.0f}"),
    ("skipped_runs", "skipped", "{:,.0f}"),
    ("skipped_saturated", "skipped (saturated)", "{:,.0f}"),
    ("lag_p99_ms", "loop lag p99 ms", "{:.2f}"),
    ("target_alerts", "target alerts fired", "{:,.0f}"),
    ("monitor_saturated", "MonitorSaturated firing", "{:.0f}"),
    ("scrapes_ok", "scrapes 200", "{:,.0f}"),
    ("scrapes_refused", "scrapes 503", "{:,.0f}"),
    ("scrape_errors", "scrape errors", "{:,.0f}"),
    ("metrics_ms", "/metrics ms", "{:.1f}"),
    ("metrics_kb", "/metrics KB", "{:,.0f}"),
    ("sigterm_exit_s", "SIGTERM exit s", "{:.2f}"),
    ("exit_code", "exit code", "{}"),
)


def median_figures(runs: Sequence[Figures]) -> Figures:
    """Field-wise median of repeated runs (notes from every run kept)."""
    first = runs[0]
    out = Figures(first.prober, first.checks, first.interval_s)
    for name in asdict(first):
        if name in ("prober", "checks", "interval_s", "notes"):
            continue
        values = [getattr(r, name) for r in runs]
        if all(v is None for v in values):
            continue
        mid = median(values)
        if isinstance(getattr(first, name), int) and mid is not None:
            mid = round(mid)
        setattr(out, name, mid)
    out.notes = [f"run {i + 1}: {note}" for i, r in enumerate(runs) for note in r.notes]
    if len(runs) > 1:
        spread = ", ".join("n/a" if r.cpu_ms_per_probe is None else f"{r.cpu_ms_per_probe:.3f}" for r in runs)
        out.notes.insert(0, f"CPU ms/probe per run: {spread}")
    return out


def markdown(rows: Sequence[Figures]) -> str:
    """The figures as a markdown table, one row per prober."""
    lines = ["| " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = []
        for name, _, fmt in COLUMNS:
            value = getattr(row, name)
            cells.append("n/a" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


GOAL_P99_MS, GOAL_RSS_MB, GOAL_METRICS_MS, GOAL_CPU_RATIO = 20.0, 60.0, 50.0, 0.8


def verdicts(daemon: Figures, blackbox: Figures | None) -> list[str]:
    """One line per part of the performance goal, met or missed, with the figure."""
    out = []

    def line(ok: bool | None, text: str) -> None:
        out.append(f"- {'n/a ' if ok is None else ('met ' if ok else 'MISSED')} {text}")

    if blackbox is not None and daemon.cpu_ms_per_probe and blackbox.cpu_ms_per_probe:
        ratio = daemon.cpu_ms_per_probe / blackbox.cpu_ms_per_probe
        line(ratio <= GOAL_CPU_RATIO,
             f"CPU per probe: pam-monitor / blackbox_exporter = {ratio:.2f} (goal <= {GOAL_CPU_RATIO})")
    else:
        line(None, "CPU per probe vs blackbox_exporter (run with --compare-blackbox)")
    p99 = daemon.lateness_p99_ms
    line(None if p99 is None else p99 <= GOAL_P99_MS,
         f"p99 scheduling lateness {'n/a' if p99 is None else f'{p99:.2f}'} ms (goal <= 20, bucket resolution)")
    line(daemon.failed_probes == 0, f"invented failures (runs not ok against a healthy target): "
                                    f"{daemon.failed_probes} (goal 0)")
    line(daemon.target_alerts == 0, f"target alerts fired: {daemon.target_alerts} (goal 0)")
    if daemon.skipped_runs:
        line(daemon.monitor_saturated == 1, f"skipped runs {daemon.skipped_runs:,.0f} in the window "
             f"({daemon.skipped_saturated or 0:,.0f} saturated); MonitorSaturated firing at the end: "
             f"{daemon.monitor_saturated:.0f} (goal 1 whenever runs are skipped; 0 skipped at 1,000 checks)")
    else:
        line(True, "skipped runs in the window: 0 (goal 0 at 1,000 checks)")
    line(daemon.rss_max_mb <= GOAL_RSS_MB, f"RSS max {daemon.rss_max_mb:.1f} MB (goal <= 60)")
    m = daemon.metrics_ms
    line(None if m is None else m <= GOAL_METRICS_MS, f"/metrics {'n/a' if m is None else f'{m:.1f}'} ms (goal <= 50)")
    return out


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=1000, help="number of http checks (default 1000)")
    parser.add_argument("--interval", type=parse_seconds, default=2.0, help="check interval (default 2s)")
    parser.add_argument("--duration", type=parse_seconds, default=60.0, help="measurement window (default 60s)")
    parser.add_argument("--target", choices=["nginx", "uvicorn", "builtin"], default="nginx",
                        help="static target on 127.0.0.1 (default nginx; builtin = raw asyncio)")
    parser.add_argument("--compare-blackbox", action="store_true",
                        help="also measure Debian's blackbox_exporter, driven by Prometheus, on the same target")
    parser.add_argument("--repeat", type=int, default=1, help="runs per prober; medians are quoted (use 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--max-in-flight", type=int, default=None, help="override http.max_in_flight")
    parser.add_argument("--both-modes", action="store_true",
                        help="measure pam-monitor with a fresh connection per probe AND with keep-alive, interleaved")
    parser.add_argument("--keep-alive", action="store_true",
                        help="http.keep_alive: true (reuse connections; default: a fresh connection per probe)")
    parser.add_argument("--variant", default=None,
                        help="run the daemon through bench.variants NAME (in-process experiments)")
    parser.add_argument("--profile", action="store_true", help="py-spy record the daemon during the window")
    parser.add_argument("--scrapers", type=int, default=0,
                        help="N concurrent /metrics scrapers during the window, on the target's CPU (default 0)")
    parser.add_argument("--client-cpu", type=int, default=0, help="CPU for the prober under test (default 0)")
    parser.add_argument("--server-cpu", type=int, default=1, help="CPU for the target and Prometheus (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, profiles)")
    args = parser.parse_args(argv)
    if not 1 <= args.checks <= 20000:
        parser.error("--checks must be between 1 and 20000")
    if not 1 <= args.repeat <= 10:
        parser.error("--repeat must be between 1 and 10")
    if not 0 <= args.scrapers <= 1000:
        parser.error("--scrapers must be between 0 and 1000")
    if args.duration > 3600 or args.interval > 600:
        parser.error("--duration at most 1h, --interval at most 10m")
    if args.compare_blackbox and not (Path(BLACKBOX).exists() and Path(PROMETHEUS).exists()):
        parser.error(f"--compare-blackbox needs {BLACKBOX} and {PROMETHEUS} "
                     "(apt-get install prometheus-blackbox-exporter prometheus)")
    return args


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    """A temp dir for configs and logs; removed afterwards unless --keep."""
    path = Path(tempfile.mkdtemp(prefix="pam-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench and print the table (or JSON)."""
    args = parse_args(argv)
    load_before = os.getloadavg()
    modes = [False, True] if args.both_modes else [args.keep_alive]
    daemon_runs: dict[bool, list[Figures]] = {mode: [] for mode in modes}
    blackbox_runs: list[Figures] = []
    # A profile is only worth recording if it outlives the run: keep the workspace (decided before entering it).
    with workspace(args.keep or args.profile) as workdir:
        children = Children(workdir)
        try:
            target = start_target(args.target, children, args.server_cpu)
            for run in range(args.repeat):  # interleaved: every prober once per round
                for mode in modes:
                    print(f"run {run + 1}/{args.repeat}: pam-monitor ({'keep-alive' if mode else 'fresh conn'}), "
                          f"{args.checks} checks at {args.interval:g} s, {args.duration:g} s window",
                          file=sys.stderr, flush=True)
                    tag = f"{run}{'k' if mode and args.both_modes else ''}"
                    daemon_runs[mode].append(measure_daemon(argparse.Namespace(**{**vars(args), "keep_alive": mode}),
                                                            children, target, tag))
                if args.compare_blackbox:
                    print(f"run {run + 1}/{args.repeat}: blackbox_exporter via Prometheus", file=sys.stderr, flush=True)
                    blackbox_runs.append(measure_blackbox(args, children, target, run))
        finally:
            children.stop_all()
    daemons = [median_figures(daemon_runs[mode]) for mode in modes]
    blackbox = median_figures(blackbox_runs) if blackbox_runs else None
    rows = daemons + ([blackbox] if blackbox else [])
    ratios = {d.prober: d.cpu_ms_per_probe / blackbox.cpu_ms_per_probe for d in daemons
              if blackbox and d.cpu_ms_per_probe and blackbox.cpu_ms_per_probe}
    pinned = len(children.cpus) > 1 and children.taskset is not None
    setup = (f"target {target.kind} on CPU {args.server_cpu if pinned else 'any'}, prober on CPU "
             f"{args.client_cpu if pinned else 'any'}; {os.cpu_count()} CPUs; medians of {args.repeat} run(s); "
             f"window {args.duration:g} s after one interval of warm-up; load average before: "
             f"{' '.join(f'{x:.2f}' for x in load_before)}, after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        print(json.dumps({"setup": setup, "target_note": target.note, "ratio_cpu_per_probe": ratios,
                          "rows": [asdict(r) for r in rows]}, indent=2))
        return 0
    print(f"\n{setup}")
    if target.note:
        print(f"NOTE: {target.note}")
    print()
    print(markdown(rows))
    for prober, ratio in ratios.items():
        print(f"\nCPU per probe, {prober} / blackbox_exporter: {ratio:.2f}")
    print("\nLateness is interpolated within the daemon's histogram buckets (1, 5, 10, 20, 50 ms ...): "
          "bucket resolution, not exact.")
    for daemon in daemons:
        print(f"\nGoal, {daemon.prober}:")
        print("\n".join(verdicts(daemon, blackbox)))
    for row in rows:
        for note in row.notes:
            print(f"- {row.prober}: {note}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
