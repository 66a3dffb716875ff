"""The soak's verdict and report: drift per hour, and false, missed, duplicate and unresolved pages (bench/soak.py)."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.run import Samples, histogram_buckets, histogram_quantile

CONFIRM_DELAY_S = 2.0
"""The soak config's alerts.confirm_delay: part of how long a blip must last to be paged."""


@dataclass
class Page:
    """One alert of one webhook notification, as received."""

    at: float  # monotonic, in this process
    event: str
    status: str
    alertname: str
    check: str | None
    fingerprint: str



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



# ---------------------------------------------------------------------------------------------- the report


def _f(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def sample_line(s: Sample) -> str:
    """One sample as the progress line printed while the soak runs."""
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


