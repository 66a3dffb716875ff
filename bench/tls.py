"""What the TLS facts cost: reading the certificate chains per handshake, and the TLS series in a /metrics render.

    .venv/bin/python -m bench.tls       # 2,000 https probe runs (5 batches), 1,000 checks rendered 21 times each

1. An https http-check run against a local TLS server (certificate made here, as in the tests; needs the test
   extra for `cryptography`), CPU per run (`time.process_time`), and, on one open connection, CPU per call of
   `probes.wire.tls_facts` (both chains; decoded certificates kept per transport, and decoded afresh) beside the
   leaf-only `getpeercert()` it replaced.
2. `Metrics.render()` CPU of 1,000 http checks whose last run saw a certificate, beside the same checks over plain
   HTTP (no TLS series), interleaved: the scrape cost the TLS families add.
Prints one table; other work on the machine shows in the figures, so compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from monitor.core.results import HTTP_PHASES, HttpFacts, Outcome, ProbeResult, Result, TlsFacts
from monitor.metrics import Metrics
from probes.wire import tls_facts
from tests.support.certs import Authority, serve_tls, server_context
from tests.support.targets import DepsFactory, run_probe
from tests.support.targets import http_check as make_check


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def _probe_runs(url: str, ca_file: Path, runs: int) -> float:
    """CPU seconds per https probe run (a fresh connection and handshake each), median of 5 batches."""
    factory = DepsFactory()
    deps = factory(url, target={"ca_file": str(ca_file)})
    check = make_check("/", timeout=3.0)
    per_batch = []
    try:
        for _ in range(5):
            started = time.process_time()
            for _ in range(runs // 5):
                result = await run_probe(check, deps)
                assert result.outcome is Outcome.OK, result.message
            per_batch.append((time.process_time() - started) / (runs // 5))
    finally:
        await factory.aclose()
    return statistics.median(per_batch)


async def _facts_calls(url: str, ca_file: Path, calls: int) -> list[float]:
    """CPU seconds per tls_facts() (certificates seen before, and first seen) and per getpeercert() on one open
    connection, medians of 5 batches."""
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(ca_file))
    _, writer = await asyncio.open_connection(host, int(port), ssl=context)
    transport = writer.transport
    ssl_object = transport.get_extra_info("ssl_object")
    out = []
    cache: dict[Any, Any] = {}  # as a WireTransport keeps it: the same certificates on every handshake
    for fn in (lambda: tls_facts(transport, cache), lambda: tls_facts(transport, {}), ssl_object.getpeercert):
        batches = []
        for _ in range(5):
            started = time.process_time()
            for _ in range(calls):
                fn()
            batches.append((time.process_time() - started) / calls)
        out.append(statistics.median(batches))
    writer.close()
    return out


def _filled(checks: int, tls: bool) -> Metrics:
    """Metrics of `checks` http checks whose last run went over TLS (with a certificate) or plain HTTP."""
    m = Metrics(process_metrics=False)
    names = [f"check_{i}" for i in range(checks)]
    m.set_checks([(n, "http", (Outcome.OK, Outcome.TIMEOUT), (), (), True) for n in names])
    facts = TlsFacts("TLSv1.3", 1.8e9, "CN=a", "CN=b", earliest_expiry=1.79e9, chain_expiry=1.79e9) if tls else None
    http = HttpFacts(phases=dict.fromkeys(HTTP_PHASES, 0.001), version=1.1, content_length=2, tls=facts)
    for n in names:
        m.observe(Result(n, "http", ProbeResult(Outcome.OK, "ok", 200, http=http), duration_s=0.01,
                         started_at=1000.0, finished_at=1000.01), None)
    return m


def _renders(checks: int, repeat: int) -> tuple[float, float, int, int]:
    """Median seconds per Metrics.render() over plain HTTP and with TLS series, interleaved (so load on the
    machine hits both alike), and the two bodies' sizes."""
    plain, tls = _filled(checks, tls=False), _filled(checks, tls=True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeat):
        for with_tls, m in ((False, plain), (True, tls)):
            started = time.process_time()
            m.render()
            times[with_tls].append(time.process_time() - started)
    return (statistics.median(times[False]), statistics.median(times[True]), len(plain.render()),
            len(tls.render()))


async def _main(runs: int, calls: int, checks: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ca = Authority(Path(tmp))
        with serve_tls(server_context(ca.issue(30, intermediate_days_left=60))) as url:
            per_run = await _probe_runs(url, ca.ca_file, runs)
            facts, first, leaf = await _facts_calls(url, ca.ca_file, calls)
    plain, with_tls, plain_size, tls_size = _renders(checks, repeat)
    rows = [
        ("https probe run (fresh connection + handshake), CPU", f"{_median_us([per_run]):.0f} µs"),
        ("tls_facts(), certificates seen before (the usual case), CPU", f"{facts * 1e6:.1f} µs"),
        ("tls_facts(), certificates first seen (decoded), CPU", f"{first * 1e6:.1f} µs"),
        ("getpeercert(): the leaf only (before), CPU", f"{leaf * 1e6:.1f} µs"),
        ("tls_facts() usual case, share of an https run's CPU", f"{facts / per_run * 100:.2f} %"),
        (f"/metrics render CPU, {checks} checks over plain HTTP", f"{plain * 1e3:.2f} ms"),
        (f"/metrics render CPU, {checks} https checks with TLS series", f"{with_tls * 1e3:.2f} ms"),
        ("/metrics body, plain HTTP / with TLS series", f"{plain_size / 1e6:.2f} MB / {tls_size / 1e6:.2f} MB"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    """Parse the flags and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000, help="https probe runs (5 batches)")
    parser.add_argument("--calls", type=int, default=2000, help="tls_facts()/getpeercert() calls per batch")
    parser.add_argument("--checks", type=int, default=1000, help="checks in the /metrics render")
    parser.add_argument("--repeat", type=int, default=21, help="renders of each kind, interleaved")
    args = parser.parse_args()
    asyncio.run(_main(args.runs, args.calls, args.checks, args.repeat))


if __name__ == "__main__":
    main()
