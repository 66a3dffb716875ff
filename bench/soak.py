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
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.run import (
    HOST,
    Children,
    Samples,
    free_port,
    histogram_buckets,
    histogram_quantile,
    http_get,
    parse_metrics,
    start_target,
    total,
    wait_http,
    workspace,
)

FAMILIES = (
    "pam_monitor_check_results_total",
    "pam_monitor_scheduler_lateness_seconds",
    "pam_monitor_scheduler_skipped_runs_total",
    "pam_monitor_alerts_firing",
)
CONFIRM_DELAY_S = 2.0


def parse_duration(text: str) -> float:
    """'1h', '10m', '30s', '500ms' or bare seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use 1h, 10m, 30s)")
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[match.group(2)]


# ---------------------------------------------------------------------------------------------- the webhook


@dataclass
class Page:
    """One alert of one webhook notification, as received."""

    at: float  # monotonic, in this process
    event: str
    status: str
    alertname: str
    check: str | None
    fingerprint: str


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


# ---------------------------------------------------------------------------------------------- sampling


@dataclass
class Sample:
    """One look at the daemon; the run and lateness figures cover the time since the previous sample."""

    t: float  # seconds since the daemon answered /healthz
    rss_mb: float
    fds: int
    threads: int
    runs: int
    not_ok: int
    skipped: int
    p50_ms: float | None
    p99_ms: float | None
    firing: int  # firing pages received so far
    resolved: int


@dataclass
class Blip:
    """Checks made to fail together."""

    checks: list[str]
    start: float  # monotonic
    end: float


@dataclass
class Verdict:
    """What the pages say against the blips."""

    blips: int = 0
    checks_blipped: int = 0
    firing: int = 0
    resolved: int = 0
    false_pages: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    monitor_pages: list[str] = field(default_factory=list)
    invented: dict[str, float] = field(default_factory=dict)
    time_to_page_s: list[float] = field(default_factory=list)


def judge_pages(pages: Sequence[Page], blips: Sequence[Blip], *, long_enough: float,
                not_ok_by_check: dict[str, float]) -> Verdict:
    """Match pages to blips: false, missed, duplicated, unresolved; and not-ok runs on checks never blipped."""
    verdict = Verdict(blips=len(blips))
    window = {c: b for b in blips for c in b.checks}
    verdict.checks_blipped = len(window)
    fired_checks: set[str] = set()
    firings: dict[str, int] = {}
    resolved: set[str] = set()
    for page in pages:
        if page.check is None:  # MonitorSaturated and the like: the monitor, not a target
            if page.status == "firing":
                verdict.monitor_pages.append(page.alertname)
            continue
        if page.status == "resolved":
            verdict.resolved += 1
            resolved.add(page.fingerprint)
            continue
        verdict.firing += 1
        blip = window.get(page.check)
        if blip is None or page.at < blip.start:
            verdict.false_pages.append(f"{page.alertname} on {page.check}")
            continue
        fired_checks.add(page.check)
        if page.event == "firing":
            firings[page.fingerprint] = firings.get(page.fingerprint, 0) + 1
            if firings[page.fingerprint] == 1:
                verdict.time_to_page_s.append(page.at - blip.start)
    verdict.duplicates = [fp for fp, n in firings.items() if n > 1]
    verdict.unresolved = [fp for fp in firings if fp not in resolved]
    verdict.missed = [c for b in blips if b.end - b.start >= long_enough for c in b.checks if c not in fired_checks]
    verdict.invented = {c: n for c, n in not_ok_by_check.items() if n and c not in window}
    return verdict


def not_ok_by_check(samples: Samples) -> dict[str, float]:
    """Runs whose outcome was not ok, per check."""
    out: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if name == "pam_monitor_check_results_total":
            got = dict(labels)
            if got.get("outcome") != "ok" and value:
                out[got["check"]] = out.get(got["check"], 0.0) + value
    return out


def lateness(before: Samples, after: Samples) -> tuple[float | None, float | None]:
    """p50 and p99 (ms) of the lateness histogram's delta between two scrapes, bucket resolution."""
    name = "pam_monitor_scheduler_lateness_seconds"
    first = dict(histogram_buckets(before, name))
    delta = [(le, n - first.get(le, 0.0)) for le, n in histogram_buckets(after, name)]
    p50, p99 = histogram_quantile(0.5, delta), histogram_quantile(0.99, delta)
    return (None if p50 is None else p50 * 1000), (None if p99 is None else p99 * 1000)


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour; None with fewer than three points."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Soak:
    """Everything one soak saw."""

    args: argparse.Namespace
    samples: list[Sample] = field(default_factory=list)
    blips: list[Blip] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)
    bad_bodies: int = 0
    not_ok: dict[str, float] = field(default_factory=dict)
    skipped_by_reason: dict[str, float] = field(default_factory=dict)
    runs_total: float = 0.0
    exit_code: int | None = None
    died: str | None = None
    log_errors: int = 0
    workdir: Path | None = None


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
            print(_sample_line(sample), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- the report


def _f(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def _sample_line(s: Sample) -> str:
    return (f"t={s.t:7.0f}s rss={s.rss_mb:6.1f}MB fds={s.fds:4d} threads={s.threads:3d} runs={s.runs:6d} "
            f"not_ok={s.not_ok:4d} skipped={s.skipped:4d} lateness p50/p99={_f(s.p50_ms, '{:.1f}')}/"
            f"{_f(s.p99_ms, '{:.1f}')}ms pages firing/resolved={s.firing}/{s.resolved}")


@dataclass
class Drift:
    """One figure's start, end and drift."""

    name: str
    start: float | None
    end: float | None
    low: float | None
    high: float | None
    per_hour: float | None


def drifts(samples: Sequence[Sample], settle: float, interval_s: float) -> list[Drift]:
    """Start (first sample after settling), end, range and least-squares drift per hour of each figure."""
    kept = [s for s in samples if s.t >= settle] or list(samples)
    rows = []
    figures: list[tuple[str, Any]] = [
        ("RSS MB", lambda s: s.rss_mb),
        ("open fds", lambda s: s.fds),
        ("threads", lambda s: s.threads),
        ("runs/s", lambda s: s.runs / interval_s),
        ("lateness p50 ms", lambda s: s.p50_ms),
        ("lateness p99 ms", lambda s: s.p99_ms),
    ]
    for name, get in figures:
        points = [(s.t, float(get(s))) for s in kept if get(s) is not None]
        values = [v for _, v in points]
        rows.append(Drift(name, values[0] if values else None, values[-1] if values else None,
                          min(values, default=None), max(values, default=None), slope_per_hour(points)))
    return rows


def report(soak: Soak) -> tuple[str, list[str]]:
    """The printed report and the list of failed goals (empty: the soak passed)."""
    args = soak.args
    out: list[str] = []
    failed: list[str] = []
    long_enough = args.interval + CONFIRM_DELAY_S + args.timeout + 2.0
    verdict = judge_pages(soak.pages, soak.blips, long_enough=long_enough, not_ok_by_check=soak.not_ok)
    span = soak.samples[-1].t if soak.samples else 0.0
    out.append(f"\n{args.checks:,} http checks at {args.interval:g} s (timeout {args.timeout:g} s) for "
               f"{span / 60:.1f} min; a blip of {args.blip_checks} checks for {args.blip_seconds:g} s every "
               f"{args.blip_every:g} s; sampled every {args.sample_every:g} s; {os.cpu_count()} CPUs, load average "
               f"at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    out.append("| t s | RSS MB | fds | threads | runs | not ok | skipped | lateness p50 / p99 ms | pages firing / "
               "resolved |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for s in soak.samples:
        out.append(f"| {s.t:.0f} | {s.rss_mb:.1f} | {s.fds} | {s.threads} | {s.runs:,} | {s.not_ok} | {s.skipped} | "
                   f"{_f(s.p50_ms, '{:.1f}')} / {_f(s.p99_ms, '{:.1f}')} | {s.firing} / {s.resolved} |")
    rows = drifts(soak.samples, args.settle, args.sample_every)
    out.append(f"\nDrift (start = first sample after {args.settle:g} s of settling; per hour = least-squares slope "
               "over those samples):\n")
    out.append("| figure | start | end | min | max | drift per hour |")
    out.append("|---|---|---|---|---|---|")
    for row in rows:
        out.append(f"| {row.name} | {_f(row.start, '{:.1f}')} | {_f(row.end, '{:.1f}')} | {_f(row.low, '{:.1f}')} | "
                   f"{_f(row.high, '{:.1f}')} | {_f(row.per_hour, '{:+.2f}')} |")
    ttp = sorted(verdict.time_to_page_s)
    out.append("\n| pages | count |")
    out.append("|---|---|")
    out.append(f"| blips / checks blipped | {verdict.blips} / {verdict.checks_blipped} |")
    out.append(f"| firing / resolved notifications (check alerts) | {verdict.firing} / {verdict.resolved} |")
    out.append(f"| time to page, blip start to first firing, min / median / max s | "
               f"{_f(ttp[0] if ttp else None, '{:.1f}')} / {_f(statistics.median(ttp) if ttp else None, '{:.1f}')} / "
               f"{_f(ttp[-1] if ttp else None, '{:.1f}')} |")
    out.append(f"| false pages (a check not blipped) | {len(verdict.false_pages)} |")
    out.append(f"| missed blips (>= {long_enough:g} s, no page) | {len(verdict.missed)} |")
    out.append(f"| duplicate firings of one alert | {len(verdict.duplicates)} |")
    out.append(f"| fired, never resolved | {len(verdict.unresolved)} |")
    out.append(f"| invented failures (not-ok runs of checks never blipped) | {sum(verdict.invented.values()):.0f} |")
    out.append(f"| monitor alerts paged (MonitorSaturated) | {len(verdict.monitor_pages)} |")
    out.append(f"| webhook bodies not understood | {soak.bad_bodies} |")
    skipped = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(soak.skipped_by_reason.items()) if v) or "none"
    out.append(f"\nRuns: {soak.runs_total:,.0f}; skipped by reason: {skipped}; error log lines: {soak.log_errors}; "
               f"exit code after SIGTERM: {soak.exit_code}")

    for name, items in (("false pages", verdict.false_pages), ("missed", verdict.missed),
                        ("duplicates", verdict.duplicates), ("unresolved", verdict.unresolved),
                        ("invented failures", sorted(verdict.invented))):
        if items:
            failed.append(f"{name}: {len(items)} ({', '.join(items[:5])}{', ...' if len(items) > 5 else ''})")
    if soak.bad_bodies:
        failed.append(f"{soak.bad_bodies} webhook bodies not understood")
    if soak.died:
        failed.append(soak.died)
    if soak.exit_code not in (0, None):
        failed.append(f"exit code {soak.exit_code} after SIGTERM")
    rss = rows[0].per_hour
    if rss is not None and rss > args.max_rss_drift:
        failed.append(f"RSS drift {rss:+.1f} MB/h > {args.max_rss_drift:g}")
    kept = [s.fds for s in soak.samples if s.t >= args.settle]
    if len(kept) >= 4:
        quarter = max(1, len(kept) // 4)
        growth = statistics.median(kept[-quarter:]) - statistics.median(kept[:quarter])
        out.append(f"fds: median of the last quarter of samples - median of the first: {growth:+.1f}")
        if growth > args.max_fd_growth:
            failed.append(f"open fds grew by {growth:.0f} (> {args.max_fd_growth})")
    if not soak.samples:
        failed.append("no sample taken")
    out.append("\n" + ("PASS" if not failed else "FAIL: " + "; ".join(failed)))
    return "\n".join(out), failed


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
