"""blackbox_exporter's CPU per probe without Prometheus: a paced Python driver asks it for /probe directly.

    python -m bench.blackbox_direct [--rate 500] [--duration 30s] [--repeat 3]

A cross-check of bench.run --compare-blackbox, whose figure includes whatever Prometheus (on the target's CPU)
does to the exporter's timing. nginx (bench.run's config) on CPU 1, the exporter on CPU 0, the driver on CPU 1:
`--rate` GETs per second of `/probe?module=http_2xx&target=<nginx>/health?bench=<i>` on 16 keep-alive connections,
spread evenly, for `--duration`. CPU is the exporter's utime+stime over the window; probes are nginx's requests.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence

from bench.run import (
    BLACKBOX,
    BLACKBOX_CONF,
    HOST,
    Children,
    cpu_seconds,
    free_port,
    parse_seconds,
    rss_bytes,
    start_target,
    wait_http,
    workspace,
)

CONNECTIONS = 16


async def _body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    """The body after `head`: Content-Length or chunked (Go chunks bodies it did not buffer whole)."""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":")[1]))
    parts = []
    for _ in range(10_000):  # bounded: a probe answer is a few chunks
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        parts.append(await reader.readexactly(size + 2))
        if size == 0:
            return b"".join(parts)
    raise RuntimeError("endless chunked body")


async def _drive(port: int, target: str, rate: float, duration: float) -> int:
    """Send rate x duration probe requests, evenly spaced, over CONNECTIONS connections; returns the 200s."""
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    ok = 0

    async def worker() -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while (i := await queue.get()) is not None:
                path = f"/probe?module=http_2xx&target={target}%3Fbench%3D{i:05d}"
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                body = await _body(reader, head)
                ok += head.startswith(b"HTTP/1.1 200") and b"probe_success 1" in body
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(CONNECTIONS)]
    start = time.monotonic()
    total = int(rate * duration)
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(i % 1000)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print CPU ms per probe of the exporter, per run and the median."""
    parser = argparse.ArgumentParser(prog="python -m bench.blackbox_direct", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="probes per second (default 500)")
    parser.add_argument("--duration", type=parse_seconds, default=30.0, help="window (default 30s)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not 1 <= args.rate <= 5000 or not 1 <= args.duration <= 600 or not 1 <= args.repeat <= 10:
        parser.error("--rate 1..5000, --duration 1s..10m, --repeat 1..10")
    figures: list[tuple[float, float, int, int]] = []
    with workspace(False) as workdir:
        children = Children(workdir)
        try:
            target = start_target("nginx", children, cpu=1)
            url = f"http%3A%2F%2F{HOST}%3A{target.port}%2Fhealth"
            (workdir / "blackbox.yml").write_text(BLACKBOX_CONF.format(timeout="1s"))
            for run in range(args.repeat):
                port = free_port()
                exporter = children.start(
                    f"blackbox-{run}", [BLACKBOX, f"--config.file={workdir / 'blackbox.yml'}",
                                        f"--web.listen-address={HOST}:{port}", "--log.level=warn"], cpu=0, cwd=workdir)
                wait_http(port, "/metrics", exporter)
                asyncio.run(_drive(port, url, args.rate, 2.0))  # warm-up
                _, requests_a = target.counters()
                cpu_a = cpu_seconds(exporter.pid)
                ok = asyncio.run(_drive(port, url, args.rate, args.duration))
                cpu_b = cpu_seconds(exporter.pid)
                _, requests_b = target.counters()
                probes = requests_b - requests_a - 1
                figures.append(((cpu_b - cpu_a) * 1000 / max(probes, 1), rss_bytes(exporter.pid) / 2**20, probes, ok))
                children.stop(exporter)
        finally:
            children.stop_all()
    print(f"\nblackbox_exporter driven directly at {args.rate:g} probes/s for {args.duration:g} s "
          f"(exporter on CPU 0, nginx and driver on CPU 1)\n")
    print("| run | probes | probe_success 1 | CPU ms/probe | RSS MB |\n|---|---|---|---|---|")
    for i, (cpu, rss, probes, ok) in enumerate(figures):
        print(f"| {i + 1} | {probes:,} | {ok:,} | {cpu:.3f} | {rss:.1f} |")
    print(f"\nmedian CPU ms/probe: {statistics.median(f[0] for f in figures):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
