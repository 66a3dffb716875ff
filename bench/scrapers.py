"""N concurrent /metrics scrapers for a fixed time (bench/run.py --scrapers N), each on a keep-alive connection,
scraping again as soon as an answer is in. Prints one JSON line: scrapes by status, errors, seconds.

    python -m bench.scrapers --url http://127.0.0.1:9108/metrics --concurrency 200 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import httpx


async def scrape(url: str, concurrency: int, duration: float) -> dict[str, object]:
    """Run `concurrency` scrapers against `url` for `duration` seconds; counts by status code or error type."""
    counts: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    ends = time.monotonic() + duration
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def one() -> None:
            while time.monotonic() < ends:
                try:
                    response = await client.get(url)
                    counts[str(response.status_code)] += 1  # a 503 is not waited on: a flood does not back off
                except httpx.HTTPError as exc:
                    counts[type(exc).__name__] += 1
                    await asyncio.sleep(0.1)

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return {"scrapes": dict(counts), "seconds": round(time.monotonic() - started, 2)}


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(scrape(args.url, args.concurrency, args.duration))), flush=True)


if __name__ == "__main__":
    main()
