"""What a /metrics render costs, in-process: time and size per family at N http checks (no server, no probes).

    python -m bench.render                 # 1,000 checks, median of 15 renders
    python -m bench.render --checks 10000 --repeat 5

The default families only (`metrics.detail` empty), as a daemon runs them unless told otherwise.
Each check gets five results first (ok, with HTTP phase timings), so every series carries realistic values. The
whole render is `Metrics.render_chunks()` joined, as the server sends it; the per-family rows time the per-check
families alone. A scrape in the daemon costs this plus sending, on the server's thread, which shares the
interpreter with the probes: under load its wall time is a multiple of this (bench.run's "/metrics ms").
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import zlib

from prometheus_client import generate_latest

import probes
from monitor.core.results import HTTP_PHASES, HttpFacts, Outcome, ProbeResult, Result
from monitor.metrics import _HEADERS, Metrics, _family_lines


def populated(checks: int, seed: int = 1) -> Metrics:
    """Metrics for `checks` http checks, each with five ok results."""
    metrics = Metrics()
    kind = probes.REGISTRY["http"]
    metrics.set_checks([(f"bench_{i:05d}", "http", kind.outcomes, (), (), True) for i in range(checks)])
    rng = random.Random(seed)  # noqa: S311 - sample values, not secrets
    now = 1_795_000_000.0
    for run in range(5):
        for i in range(checks):
            phases = {p: rng.random() * 0.001 for p in HTTP_PHASES}
            phases["tls"] = 0.0
            facts = HttpFacts(phases=phases, version=1.1, content_length=20, dns_lookup_s=phases["resolve"])
            observed = ProbeResult(Outcome.OK, "200", status_code=200, http=facts)
            duration = rng.random() * 0.003
            metrics.observe(Result(f"bench_{i:05d}", "http", observed, duration_s=duration, started_at=now,
                                   finished_at=now + duration), Outcome.OK if run else None)
            now += 0.002
    return metrics


def _gzipped(metrics: Metrics) -> bytes:
    """The body as /metrics sends it to a scraper that accepts gzip (monitor/server.py: level 1, piece by piece)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    return b"".join([packer.compress(piece) for piece in metrics.render_chunks()]) + packer.flush()


def timed(fn: object, repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    """Render and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    metrics = populated(args.checks)
    body = b"".join(metrics.render_chunks())
    whole = timed(lambda: b"".join(metrics.render_chunks()), args.repeat)
    zipped = timed(lambda: _gzipped(metrics), args.repeat)
    print(f"{args.checks:,} http checks; whole render median of {args.repeat}: {whole * 1000:.1f} ms, "
          f"{len(body) / 1024:,.0f} KB; gzipped as the server sends it to Prometheus: {zipped * 1000:.1f} ms, "
          f"{len(_gzipped(metrics)) / 1024:,.0f} KB")
    print()
    print("| family | ms | KB |")
    print("|---|---|---|")
    series = list(metrics._series.values())
    for i, header in enumerate(_HEADERS):
        text = _family_lines(i, series, metrics._templates)
        seconds = timed(lambda i=i: _family_lines(i, series, metrics._templates), args.repeat)
        print(f"| {header.split()[2]} | {seconds * 1000:.2f} | {len(text) / 1024:,.0f} |")
    daemon_wide = generate_latest(metrics.registry)
    seconds = timed(lambda: generate_latest(metrics.registry), args.repeat)
    print(f"| daemon-wide series (prometheus_client) | {seconds * 1000:.2f} | {len(daemon_wide) / 1024:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
