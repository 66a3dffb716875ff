"""The one poller of the test suite: wait for a condition, bounded in time, instead of sleeping a fixed while."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 20.0
"""Generous on purpose: other suites share this 2-core machine; a passing condition returns at once anyway."""


def until(
    predicate: Callable[[], T],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.05,
    what: str = "condition",
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """Call `predicate()` until it returns something truthy and return that value.

    An exception of a type in `ignore` counts as "not yet" (a server still starting); any other propagates at
    once, so a predicate can abort the wait (a child process that died). After `timeout` seconds: AssertionError
    naming `what` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last value {last!r}")
        time.sleep(interval)


async def until_async(
    predicate: Callable[[], T],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.02,
    what: str = "condition",
    in_thread: bool = False,
) -> T:
    """`until` for a test running in an event loop: the loop keeps serving while it waits.

    `in_thread`: call the predicate in a worker thread (one that does blocking I/O, such as asking a real
    Alertmanager), so the code under test keeps running on the loop meanwhile.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        value = await asyncio.to_thread(predicate) if in_thread else predicate()
        if value:
            return value
        last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last value {last!r}")
        await asyncio.sleep(interval)
