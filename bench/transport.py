"""CPU per request of each way to send a probe's GET, in one process, against nginx on 127.0.0.1 (one table).

    python -m bench.transport [--requests 3000] [--concurrency 1,16] [--repeat 3] [--only NAME,...]

Starts nginx (bench.run's config) on CPU 1; each variant runs in its own Python process pinned to CPU 0 and sends
`--requests` GETs of /health, `--concurrency` at a time, after a warm-up of 200. CPU is the process's own
user+system time (`time.process_time`) over the timed requests, so it includes the event loop's share. Variants:
httpx's pool (keep-alive / a fresh connection each time), probes.wire through httpx.AsyncClient and called
directly (keep-alive / fresh), and aiohttp (keep-alive / force_close) when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.run import Children, start_target

Sender = Callable[[], Awaitable[int]]


async def _httpx(url: str, keep_alive: bool, transport: httpx.AsyncBaseTransport | None) -> tuple[Sender, Any]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64 if keep_alive else 0)
    client = httpx.AsyncClient(trust_env=False, limits=limits, transport=transport,
                               headers={"Accept-Encoding": "identity"})

    async def send() -> int:
        async with client.stream("GET", url) as response:
            async for _ in response.aiter_bytes():
                pass
            return response.status_code

    return send, client.aclose


async def _wire_direct(url: str, keep_alive: bool) -> tuple[Sender, Any]:
    """probes.wire as probes/_http.py's fetch uses it: a prepared request, the body read raw."""
    from probes.wire import Trace, WireTransport, prepare

    transport = WireTransport(None, keep_alive=keep_alive)
    prepared = prepare(httpx.Request("GET", url, headers={"User-Agent": "bench", "Accept-Encoding": "identity"}))

    async def send() -> int:
        exchange = await transport.send(prepared, Trace())
        try:
            async for _ in exchange.body():
                pass
        finally:
            transport.release(exchange)
        return exchange.status

    return send, transport.aclose


class _WireForHttpx(httpx.AsyncBaseTransport):
    """probes.wire behind httpx.AsyncClient (the `httpx-wire-*` variants): what httpx's own layers cost on top.

    The probes call WireTransport.send directly; this adapter exists only to measure that choice."""

    def __init__(self, wire: Any) -> None:
        self._wire = wire

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        from probes.wire import Trace, prepare

        exchange = await self._wire.send(prepare(request), Trace())
        wire = self._wire

        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in exchange.body():
                    yield chunk

            async def aclose(self) -> None:
                wire.release(exchange)

        return httpx.Response(exchange.status, headers=exchange.headers, stream=Body(), request=request)

    async def aclose(self) -> None:
        await self._wire.aclose()


async def _aiohttp(url: str, keep_alive: bool) -> tuple[Sender, Any]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=not keep_alive, limit=0))

    async def send() -> int:
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
            await response.read()
            return response.status

    return send, session.close


async def _make(name: str, url: str) -> tuple[Sender, Any]:
    if name.startswith("httpx-wire-"):
        import ssl

        from probes.wire import WireTransport

        keep = name.endswith("keepalive")
        return await _httpx(url, keep, _WireForHttpx(WireTransport(ssl.create_default_context(), keep_alive=keep)))
    if name.startswith("httpx-"):
        return await _httpx(url, name.endswith("keepalive"), None)
    if name.startswith("wire-"):
        return await _wire_direct(url, name.endswith("keepalive"))
    if name.startswith("aiohttp-"):
        return await _aiohttp(url, name.endswith("keepalive"))
    raise ValueError(name)


VARIANTS = ("httpx-keepalive", "httpx-fresh", "httpx-wire-keepalive", "httpx-wire-fresh", "wire-keepalive",
            "wire-fresh", "aiohttp-keepalive", "aiohttp-fresh")


async def _worker(name: str, url: str, requests: int, concurrency: int) -> dict[str, float]:
    send, close = await _make(name, url)
    try:
        async def loop_of(n: int) -> int:
            bad = 0
            for _ in range(n):
                bad += (await send()) != 200
            return bad

        await asyncio.gather(*(loop_of(200 // concurrency) for _ in range(concurrency)))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        bad = sum(await asyncio.gather(*(loop_of(requests // concurrency) for _ in range(concurrency))))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await close()
    done = (requests // concurrency) * concurrency
    return {"cpu_us": cpu / done * 1e6, "wall_us": wall / done * 1e6, "bad": bad}


def _child(argv: list[str]) -> int:
    name, url, requests, concurrency = argv[0], argv[1], int(argv[2]), int(argv[3])
    print(json.dumps(asyncio.run(_worker(name, url, requests, concurrency))))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run every variant in its own pinned process, interleaved, and print CPU µs per request."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return _child(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    if not 100 <= args.requests <= 100_000 or not 1 <= args.repeat <= 10:
        parser.error("--requests 100..100000, --repeat 1..10")
    names = [n for n in args.only.split(",") if n]
    levels = [int(c) for c in args.concurrency.split(",")]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    results: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pam-bench-transport-") as tmp:
        children = Children(Path(tmp))
        try:
            target = start_target("nginx", children, cpu=1)
            url = target.health_url + "/health"
            for _ in range(args.repeat):  # interleaved: every variant once per round
                for concurrency in levels:
                    for name in names:
                        cmd = [sys.executable, "-m", "bench.transport", "--child", name, url, str(args.requests),
                               str(concurrency)]
                        if children.taskset and len(children.cpus) > 1:
                            cmd = [children.taskset, "-c", "0", *cmd]
                        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
                        if out.returncode != 0:
                            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                            continue
                        figures = json.loads(out.stdout.strip().splitlines()[-1])
                        if figures["bad"]:
                            print(f"{name}: {figures['bad']} requests not 200", file=sys.stderr)
                        results.setdefault((name, concurrency), []).append(figures["cpu_us"])
        finally:
            children.stop_all()
    print(f"\nCPU µs per request, median of {args.repeat} (runs), {args.requests} requests, nginx on 127.0.0.1\n")
    print("| variant | " + " | ".join(f"concurrency {c}" for c in levels) + " |")
    print("|---|" + "---|" * len(levels))
    for name in names:
        cells = []
        for concurrency in levels:
            runs = results.get((name, concurrency), [])
            cells.append("n/a" if not runs else
                         f"{statistics.median(runs):.0f} ({', '.join(f'{r:.0f}' for r in runs)})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
