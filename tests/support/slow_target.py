"""A cheap HTTP target in its own process: every GET gets 200 after a fixed delay (keep-alive), and GET /__count
says how many requests it served. Its own process, so a test's threads (scrapers) cannot starve it of the GIL.

    python -m tests.support.slow_target --port P --delay 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.poll import until
from tests.support.servers import free_port

BODY = b'{"status":"healthy"}'


def _response(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)


async def serve(port: int, delay: float) -> None:
    """Serve until the process is killed."""
    loop = asyncio.get_running_loop()
    served = [0]

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport, self.buffer = transport, b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while b"\r\n\r\n" in self.buffer:  # one request head per turn: bounded by the data received
                head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
                if head.split(b" ", 2)[1:2] == [b"/__count"]:
                    self.transport.write(_response(str(served[0]).encode()))
                    continue
                served[0] += 1
                loop.call_later(delay, self.answer)

        def answer(self) -> None:
            if not self.transport.is_closing():
                self.transport.write(_response(BODY))

    server = await loop.create_server(Protocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


class SlowTarget:
    """The target as a child process of the test: `url`, `served()`, stopped on exit."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    def served(self) -> int:
        """Requests answered (or being answered) so far, /__count excluded."""
        return int(httpx.get(f"{self.url}/__count", timeout=5).text)


@contextlib.contextmanager
def slow_target(delay: float) -> Iterator[SlowTarget]:
    """Start the target in its own process; wait until it answers; kill it after."""
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.slow_target", "--port", str(port),
                             "--delay", str(delay)], cwd=str(root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    target = SlowTarget(proc, port)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the slow target exited with {proc.returncode}")
            return target.served() >= 0

        until(up, timeout=15, what="the slow target", ignore=(httpx.HTTPError,))
        yield target
    finally:
        proc.kill()
        proc.wait(5)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.delay))


if __name__ == "__main__":
    main()
