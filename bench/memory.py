"""Where the daemon's resident memory goes: RSS of `pam-monitor run` at 1 and N checks, and what scrapes add.

    python -m bench.memory                      # 1 and 1,000 http checks at 2 s, three scrapes each
    python -m bench.memory --checks 1,1000,3000 --scrapes 5

For each row: a static target (nginx, else bench/target.py) on one CPU, `pam-monitor run` with that many checks
(bench.run's config) pinned to the other; VmRSS sampled every 0.25 s; after `--settle` seconds the RSS before any
scrape, then `--scrapes` GETs of /metrics 2 s apart (the daemon keeps nothing of a lone scrape: what stays is the
allocator's), and the peak over the whole run. "per check" is (RSS - RSS at 1 check) / (checks - 1).
bench.run's "RSS max" is the same measure over its window; this one isolates start-up and scrapes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.run import Children, Target, daemon_config, free_port, http_get, start_target, wait_http


def vm_rss_mb(pid: int) -> float:
    """The process's resident set in MB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def measure(children: Children, workdir: Path, target: Target, checks: int, args: argparse.Namespace,
            client_cpu: int) -> dict[str, float]:
    """One daemon with `checks` checks: RSS settled, after each scrape, peak, and the scrapes' median time."""
    row = workdir / f"c{checks}"
    (row / "state").mkdir(parents=True)
    config = row / "pam-monitor.json"
    config.write_text(daemon_config(checks, 2.0, target, row / "state", None))
    port = free_port()
    root = Path(__file__).resolve().parent.parent
    proc = children.start(f"daemon-{checks}", [sys.executable, "-m", "monitor.cli", "run", "--config", str(config),
                                               "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
                          cpu=client_cpu, cwd=row, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        wait_http(port, "/healthz", proc)
        start = time.monotonic()
        peak = 0.0
        while time.monotonic() - start < args.settle:
            peak = max(peak, vm_rss_mb(proc.pid))
            time.sleep(0.25)
        settled = vm_rss_mb(proc.pid)
        times = []
        for _ in range(args.scrapes):
            status, _, seconds = http_get(port, "/metrics")
            if status != 200:
                raise RuntimeError(f"/metrics answered {status}")
            times.append(seconds * 1000)
            until = time.monotonic() + 2.0
            while time.monotonic() < until:
                peak = max(peak, vm_rss_mb(proc.pid))
                time.sleep(0.25)
        return {"settled": settled, "after": vm_rss_mb(proc.pid), "peak": max(peak, vm_rss_mb(proc.pid)),
                "scrape_ms": statistics.median(times) if times else float("nan")}
    finally:
        children.stop(proc)


def main() -> int:
    """Measure each row and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", default="1,1000", help="comma-separated check counts (default 1,1000)")
    parser.add_argument("--scrapes", type=int, default=3, help="GETs of /metrics after settling (default 3)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds before the first scrape (default 8)")
    parser.add_argument("--target", default="nginx", choices=["nginx", "builtin"])
    args = parser.parse_args()
    counts = [int(c) for c in args.checks.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[1], cpus[0]) if len(cpus) > 1 else (cpus[0], cpus[0])
    with tempfile.TemporaryDirectory(prefix="pam-bench-mem-") as tmp:
        workdir = Path(tmp)
        children = Children(workdir)
        try:
            target = start_target(args.target, children, server_cpu)
            rows = [(n, measure(children, workdir, target, n, args, client_cpu)) for n in counts]
        finally:
            children.stop_all()
    load = os.getloadavg()
    print(f"target {target.kind}; daemon on CPU {client_cpu}; load average after: {load[0]:.2f} {load[1]:.2f}")
    print()
    print("| checks | RSS settled MB | RSS after scrapes MB | RSS peak MB | per check KB (peak) | /metrics ms |")
    print("|---|---|---|---|---|---|")
    base = rows[0][1]["peak"] if rows and rows[0][0] == 1 else None
    for n, r in rows:
        per = f"{(r['peak'] - base) * 1024 / (n - 1):.1f}" if base is not None and n > 1 else "n/a"
        print(f"| {n:,} | {r['settled']:.1f} | {r['after']:.1f} | {r['peak']:.1f} | {per} | {r['scrape_ms']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
