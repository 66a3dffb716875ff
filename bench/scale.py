"""How the daemon's cost grows with the number of checks: one table, one command.

    python -m bench.scale                                  # 1 @ 1 s (baseline), 100 @ 1 s, 1,000 @ 2 s,
                                                           # 5,000 @ 10 s, 10,000 @ 20 s: the same 100-500 runs/s
    python -m bench.scale --rows 2000@1s,3000@1s,4000@1s   # look for the knee: more runs per second
    python -m bench.scale --keep-alive                     # http.keep_alive: true

Each row is one `bench.run` daemon measurement (nginx target on CPU 1, daemon on CPU 0, same columns) with a
window of max(30 s, two intervals). `RSS/check KB` is (RSS - the 1-check baseline's RSS) / (checks - 1): flat
means memory grows linearly with checks and nothing else. `CPU % of a core` is CPU time over the window.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from bench.run import Children, Figures, measure_daemon, parse_seconds, start_target, workspace

DEFAULT_ROWS = "1@1s,100@1s,1000@2s,5000@10s,10000@20s"


def parse_rows(text: str) -> list[tuple[int, float]]:
    """'100@1s,1000@2s' -> [(100, 1.0), (1000, 2.0)]."""
    rows = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*@\s*(\S+)\s*", part)
        if match is None:
            raise argparse.ArgumentTypeError(f"not a row: {part!r} (use CHECKS@INTERVAL, e.g. 1000@2s)")
        checks, interval = int(match.group(1)), parse_seconds(match.group(2))
        if not 1 <= checks <= 20000 or not 0.1 <= interval <= 600:
            raise argparse.ArgumentTypeError(f"{part!r}: 1..20000 checks, interval 100ms..10m")
        rows.append((checks, interval))
    return rows


def _args(base: argparse.Namespace, checks: int, interval: float) -> argparse.Namespace:
    """The bench.run options measure_daemon reads, for one row."""
    return argparse.Namespace(
        checks=checks, interval=interval, duration=max(base.min_window, 2 * interval), keep_alive=base.keep_alive,
        variant=None, profile=False, max_in_flight=None, client_cpu=0, server_cpu=1, scrapers=0,
    )


def table(rows: Sequence[Figures], baseline: Figures | None) -> str:
    """The markdown table."""
    head = ("| checks | interval s | runs/s | probes in window | not ok | CPU ms/probe | CPU % of a core | RSS MB | "
            "RSS/check KB | lateness p99 ms | runs >20 ms late | skipped | /metrics ms | /metrics KB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for fig in rows:
        per_check = ("n/a" if baseline is None or fig.checks <= baseline.checks
                     else f"{(fig.rss_max_mb - baseline.rss_max_mb) * 1024 / (fig.checks - baseline.checks):.1f}")
        rate = fig.checks / fig.interval_s
        core = 100 * fig.cpu_s / fig.window_s if fig.window_s else 0.0

        def f(value: float | None, fmt: str) -> str:
            return "n/a" if value is None else fmt.format(value)

        lines.append(
            f"| {fig.checks:,} | {fig.interval_s:g} | {rate:,.0f} | {fig.probes:,} | {f(fig.failed_probes, '{:,}')} | "
            f"{f(fig.cpu_ms_per_probe, '{:.3f}')} | {core:.0f} | {fig.rss_max_mb:.1f} | {per_check} | "
            f"{f(fig.lateness_p99_ms, '{:.2f}')} | {f(fig.lateness_over_20ms, '{:,}')} | "
            f"{f(fig.skipped_runs, '{:,.0f}')} | {f(fig.metrics_ms, '{:.1f}')} | {f(fig.metrics_kb, '{:,.0f}')} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every row, one after the other, and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=parse_rows, default=parse_rows(DEFAULT_ROWS),
                        help=f"CHECKS@INTERVAL,... (default {DEFAULT_ROWS}); a 1-check row is the RSS baseline")
    parser.add_argument("--min-window", type=parse_seconds, default=30.0, help="shortest window (default 30s)")
    parser.add_argument("--keep-alive", action="store_true", help="http.keep_alive: true")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    figures: list[Figures] = []
    with workspace(args.keep) as workdir:
        children = Children(workdir)
        try:
            target = start_target("nginx", children, cpu=1)
            for i, (checks, interval) in enumerate(args.rows):
                print(f"row {i + 1}/{len(args.rows)}: {checks} checks at {interval:g} s", file=sys.stderr, flush=True)
                figures.append(measure_daemon(_args(args, checks, interval), children, target, f"scale{i}"))
        finally:
            children.stop_all()
    baseline = next((fig for fig in figures if fig.checks == 1), None)
    print(f"\nhttp checks on one nginx target (127.0.0.1), daemon on CPU 0, "
          f"{'keep-alive' if args.keep_alive else 'a fresh connection per probe'}; target {target.kind}; load "
          f"average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print(table(figures, baseline))
    for fig in figures:
        for note in fig.notes:
            print(f"- {fig.checks} checks: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
