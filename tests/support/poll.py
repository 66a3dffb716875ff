"""Waiting in tests for something to happen: poll a condition, bounded in time, instead of a fixed sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def until(predicate: Callable[[], T], *, timeout: float = 10.0, every: float = 0.01) -> T:
    """Poll `predicate` every `every` seconds until it returns something truthy, and return that; fail the test
    with AssertionError once `timeout` seconds have passed without it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"{getattr(predicate, '__name__', predicate)!s} still false after {timeout} s")
        await asyncio.sleep(every)
