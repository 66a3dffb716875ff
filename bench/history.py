"""What the history rollups (monitor/history.py) cost at N checks over 30 days: bytes on disk and the time of a
/status summary, with an injected clock (no daemon, no waiting).

    python -m bench.history                 # 1,000 checks
    python -m bench.history --checks 200

Each check gets, for 30 days, one hour bucket a simulated hour and, for the last 25 hours, one 5-minute bucket
every 5 minutes: every row the retention keeps, each with several runs over three latency buckets (what a check
at a 30 s interval writes). Row count, not run count, decides the size: a bucket is a row of small integers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from monitor.core.results import Outcome, ProbeResult, Result
from monitor.history import COARSE_S, FINE_KEEP_S, FINE_S, History

DAY = 86400


def main() -> int:
    """Fill, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=1000)
    args = parser.parse_args()
    start = 1_800_000_000 - 1_800_000_000 % DAY
    now = [float(start)]
    with tempfile.TemporaryDirectory() as tmp:
        history = History(Path(tmp), lambda: now[0])
        names = [f"bench_{i:05d}" for i in range(args.checks)]
        began = time.perf_counter()
        end = start + 30 * DAY
        for hour in range(start, end, COARSE_S):
            now[0] = float(hour)
            fine = hour >= end - FINE_KEEP_S
            for name in names:
                for slot in range(0, COARSE_S, FINE_S) if fine else (0,):
                    for duration in (0.012, 0.018, 0.045):  # three latency buckets, one run each
                        history.record(Result(name, "http", ProbeResult(Outcome.OK, "m"), duration_s=duration,
                                              started_at=hour + slot, finished_at=hour + slot))
            history.flush()
        filled = time.perf_counter() - began
        now[0] = float(end)
        history.flush()
        size = history.size_bytes()
        timings = []
        for _ in range(3):
            t = time.perf_counter()
            history.refresh()
            timings.append(time.perf_counter() - t)
        history.close()
    print(f"{args.checks:,} checks x 30 days: history tables {size / 1e6:.1f} MB ({size / args.checks / 1024:.1f} KB "
          f"a check); summary refresh (every 5 min on a worker thread) median of 3: "
          f"{statistics.median(timings) * 1000:.0f} ms; filled in {filled:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
