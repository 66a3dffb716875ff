"""The soak: the real daemon at 1,000 checks for an hour with blips; drift of memory, fds and lateness, and pages.

    .venv/bin/python -m bench.soak                                  # 1,000 checks at 2 s for 1 h
    .venv/bin/python -m bench.soak --duration 10m                   # shorter
    .venv/bin/python -m bench.soak --checks 200 --duration 3m --blip-every 40s   # a quick look

Starts the asyncio target of bench/target.py and a webhook receiver on 127.0.0.1, then `pam-monitor run` (a
subprocess, a generated config: N http checks `soak_00000...` each on its own path `/health/<check>`, the alert
engine with one webhook sink). Every `--blip-every` a few checks never blipped before answer 503 for
`--blip-seconds`, then recover (a blip); no blip starts in the last `--blip-seconds` + 90 s, so every one can fire
and resolve before the end. Every `--sample-every` it reads the daemon's RSS and thread count (/proc/<pid>/status),
its open fds (/proc/<pid>/fd) and /metrics (runs, outcomes and scheduling lateness since the last sample).

At the end it prints the samples, a table of start / end / drift per hour (least-squares slope over the samples
after `--settle`), and the pages: what the webhook got, per alert, against the blips. A *false page* is a firing
notification for a check that was not blipped (or before its blip began); a *missed* blip is one that lasted long
enough (`interval + confirm_delay + timeout + 2 s`) and paged nothing; a *duplicate* is a second `firing` of one
alert (fingerprint); *unresolved* is an alert that fired and got no `resolved` by the end. Runs that were not ok on
checks never blipped are *invented failures*. Exits 1 when any of those is non-zero, when RSS grows faster than
`--max-rss-drift` MB an hour, when the fd count grows by more than `--max-fd-growth`, or when the daemon dies.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.run import (
    HOST,
    Children,
    free_port,
    http_get,
    parse_metrics,
    start_target,
    total,
    wait_http,
    workspace,
)
from bench.soak_report import (
    CONFIRM_DELAY_S,
    Blip,
    Page,
    Sample,
    Soak,
    lateness,
    not_ok_by_check,
    report,
    sample_line,
)

FAMILIES = (
    "pam_monitor_check_results_total",
    "pam_monitor_scheduler_lateness_seconds",
    "pam_monitor_scheduler_skipped_runs_total",
    "pam_monitor_alerts_firing",
)


def parse_duration(text: str) -> float:
    """'1h', '10m', '30s', '500ms' or bare seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use 1h, 10m, 30s)")
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[match.group(2)]


# ---------------------------------------------------------------------------------------------- the webhook


class Pages:
    """What the webhook receiver got, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pages: list[Page] = []
        self.bad_bodies = 0

    def add(self, body: bytes) -> None:
        """Record every alert of one notification; a body that is not the documented JSON is counted as bad."""
        now = time.monotonic()
        try:
            doc = json.loads(body)
            pages = [Page(now, doc["event"], a["status"], a["labels"]["alertname"], a["labels"].get("check"),
                          a["fingerprint"]) for a in doc["alerts"]]
        except (ValueError, KeyError, TypeError):
            with self.lock:
                self.bad_bodies += 1
            return
        with self.lock:
            self.pages.extend(pages)

    def snapshot(self) -> list[Page]:
        """A copy of the pages so far."""
        with self.lock:
            return list(self.pages)


@contextlib.contextmanager
def webhook_receiver(pages: Pages) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers every POST 200 and records its body; yields the URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
            pages.add(self.rfile.read(length))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---------------------------------------------------------------------------------------------- the daemon


def check_name(i: int) -> str:
    """The i-th check's name (and its path under /health/)."""
    return f"soak_{i:05d}"


def soak_config(checks: int, interval: float, timeout: float, target_url: str, hook: str, state_dir: Path) -> str:
    """A config (JSON, which YAML reads): N http checks, each on its own path, and one webhook sink."""
    doc: dict[str, Any] = {
        "service": "soak",
        "state_dir": str(state_dir),
        "log_level": "warning",
        "defaults": {"interval": f"{interval}s", "timeout": f"{timeout}s"},
        "targets": {"app": {"base_url": target_url}},
        "alerts": {"confirm_delay": f"{CONFIRM_DELAY_S}s", "sinks": [{"kind": "webhook", "name": "soak", "url": hook}]},
        "checks": [
            {"name": check_name(i), "kind": "http", "target": "app", "path": f"/health/{check_name(i)}",
             "expect": {"status": [200]}}
            for i in range(checks)
        ],
    }
    return json.dumps(doc, indent=1)


def fd_count(pid: int) -> int:
    """Open file descriptors of a process (entries of /proc/<pid>/fd); 0 when it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def proc_status(pid: int) -> tuple[float, int]:
    """(VmRSS in MB, threads) from /proc/<pid>/status; (0, 0) when it is gone."""
    rss, threads = 0.0, 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    except OSError:
        pass
    return rss, threads


# ---------------------------------------------------------------------------------------------- the run


def run_soak(args: argparse.Namespace, workdir: Path) -> Soak:
    """Start target, receiver and daemon; blip and sample until the duration is over; stop; collect."""
    soak = Soak(args, workdir=workdir)
    children = Children(workdir)
    pages = Pages()
    try:
        target = start_target("builtin", children, cpu=None)
        with webhook_receiver(pages) as hook:
            config = workdir / "soak.yaml"
            config.write_text(soak_config(args.checks, args.interval, args.timeout, target.health_url, hook,
                                          workdir / "state"))
            port = free_port()
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
            proc = children.start("daemon", [sys.executable, "-m", "monitor.cli", "run", "--config", str(config),
                                             "--listen", f"{HOST}:{port}", "--log-level", "warning"], env=env)
            try:
                wait_http(port, "/healthz", proc, limit=120)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{children.log_tail('daemon')}") from None
            _loop(args, soak, pages, proc.pid, port, target.port, lambda: proc.poll() is None)
            if proc.poll() is None:
                final = parse_metrics(http_get(port, "/metrics")[1].decode(), FAMILIES)
                soak.not_ok = not_ok_by_check(final)
                soak.runs_total = total(final, "pam_monitor_check_results_total")
                for (name, labels), value in final.items():
                    if name == "pam_monitor_scheduler_skipped_runs_total":
                        soak.skipped_by_reason[dict(labels).get("reason", "?")] = value
                children.stop(proc, grace=30)
                soak.exit_code = proc.returncode
            else:
                soak.died = f"the daemon exited with {proc.returncode}: {children.log_tail('daemon', 5)}"
            soak.pages, soak.bad_bodies = pages.snapshot(), pages.bad_bodies
    finally:
        children.stop_all()
    lines = children.log_tail("daemon", 10_000_000).splitlines()
    soak.log_errors = sum(1 for line in lines if '"level": "error"' in line or '"level":"error"' in line)
    return soak


def _loop(args: argparse.Namespace, soak: Soak, pages: Pages, pid: int, port: int, target_port: int,
          alive: Any) -> None:
    """Blip and sample until the duration is over (bounded by it), or the daemon dies."""
    started = time.monotonic()
    ends = started + args.duration
    last_blip_at = ends - args.blip_seconds - 90
    next_blip = started + args.first_blip
    next_sample = started + args.sample_every
    unused = iter(range(args.checks))
    previous = parse_metrics(http_get(port, "/metrics")[1].decode(), FAMILIES)
    while time.monotonic() < ends:
        time.sleep(max(0.0, min(next_blip, next_sample, ends) - time.monotonic()))
        now = time.monotonic()
        if not alive():
            soak.died = "the daemon died"
            return
        if now >= next_blip and now <= last_blip_at:
            picked = [check_name(i) for _, i in zip(range(args.blip_checks), unused, strict=False)]
            if picked:
                paths = ",".join(f"/health/{c}" for c in picked)
                status, _, _ = http_get(target_port, f"/__blip?paths={paths}&seconds={args.blip_seconds:g}")
                if status == 200:
                    soak.blips.append(Blip(picked, now, now + args.blip_seconds))
            next_blip += args.blip_every
        if now >= next_sample:
            next_sample += args.sample_every
            status, body, _ = http_get(port, "/metrics", timeout=30)
            if status != 200:
                continue  # refused (another scrape in progress): the next sample covers this one's time
            current = parse_metrics(body.decode(), FAMILIES)
            rss, threads = proc_status(pid)
            p50, p99 = lateness(previous, current)
            seen = pages.snapshot()
            runs = total(current, "pam_monitor_check_results_total")
            ok = total(current, "pam_monitor_check_results_total", outcome="ok")
            sample = Sample(
                t=now - started, rss_mb=rss, fds=fd_count(pid), threads=threads,
                runs=round(runs - total(previous, "pam_monitor_check_results_total")),
                not_ok=round((runs - ok) - (total(previous, "pam_monitor_check_results_total")
                                            - total(previous, "pam_monitor_check_results_total", outcome="ok"))),
                skipped=round(total(current, "pam_monitor_scheduler_skipped_runs_total")
                              - total(previous, "pam_monitor_scheduler_skipped_runs_total")),
                p50_ms=p50, p99_ms=p99,
                firing=sum(1 for p in seen if p.status == "firing"),
                resolved=sum(1 for p in seen if p.status == "resolved"),
            )
            soak.samples.append(sample)
            previous = current
            print(sample_line(sample), file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=1000, help="http checks (default 1000)")
    parser.add_argument("--interval", type=parse_duration, default=2.0, help="every check's interval (default 2s)")
    parser.add_argument("--timeout", type=parse_duration, default=1.0, help="every check's timeout (default 1s)")
    parser.add_argument("--duration", type=parse_duration, default=3600.0, help="how long (default 1h)")
    parser.add_argument("--sample-every", type=parse_duration, default=30.0, help="default 30s")
    parser.add_argument("--settle", type=parse_duration, default=None,
                        help="samples before this are left out of the drift (default 2m, or a fifth of a shorter run)")
    parser.add_argument("--blip-every", type=parse_duration, default=180.0, help="default 3m")
    parser.add_argument("--blip-seconds", type=parse_duration, default=30.0, help="default 30s")
    parser.add_argument("--blip-checks", type=int, default=3, help="checks failed by each blip (default 3)")
    parser.add_argument("--first-blip", type=parse_duration, default=60.0, help="default 1m after start")
    parser.add_argument("--max-rss-drift", type=float, default=10.0, help="MB per hour (default 10)")
    parser.add_argument("--max-fd-growth", type=int, default=10, help="default 10")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs)")
    args = parser.parse_args(argv)
    if not 1 <= args.checks <= 20000:
        parser.error("--checks: 1..20000")
    if not 0 < args.timeout < args.interval:
        parser.error("--timeout must be shorter than --interval")
    if args.duration < 2 * args.sample_every:
        parser.error("--duration must cover at least two samples")
    if args.settle is None:
        args.settle = min(120.0, args.duration / 5)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and print its report; 1 when a goal failed."""
    args = parse_args(argv)
    with workspace(args.keep) as workdir:
        soak = run_soak(args, workdir)
    text, failed = report(soak)
    print(text, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
