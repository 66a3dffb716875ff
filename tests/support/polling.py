"""Wait for a condition instead of sleeping a fixed time: a blocking poller and an asyncio one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll `predicate()` until it returns something truthy (returned) or `timeout` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value {last!r}")


async def until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02, *,
                in_thread: bool = False) -> Any:
    """Poll `predicate()` without blocking the event loop until it returns something truthy (returned), or fail.

    `in_thread`: call it in a worker thread (for a predicate that does blocking I/O, such as asking a real
    Alertmanager), so the engine keeps delivering on the loop meanwhile.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        last = await asyncio.to_thread(predicate) if in_thread else predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value {last!r}")
