"""Admission: a run starts only once it holds its target's request slots, and its deadline starts then.

The runner owns this (one `Admission` per runner, so per loaded config); probes never wait for a slot themselves.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    """One target's request slots: at most `capacity` requests admitted at once, first come, first served.

    The runner admits a run by taking as many slots as the run sends requests (`Kind.requests`, at most all of
    them) and starts the run's deadline only then, so time spent waiting here is never counted as a target's
    timeout. A waiter that needs more slots than are free holds the line: nobody overtakes it, so a run of an
    `auth_contract` check (five requests) is not starved by a stream of one-request runs.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        # (slots wanted, future); a waiter that gave up leaves its future cancelled here and is dropped when it
        # reaches the head, so giving up is O(1) even with thousands waiting.
        self._line: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._waiting = 0
        self._queued = 0  # slots wanted by the live waiters
        self._hold = 0.0  # how long a run holds its slots, smoothed (0: not known yet)

    @property
    def free(self) -> int:
        """Slots not held by anyone right now."""
        return self._free

    @property
    def waiting(self) -> int:
        """Runs waiting in line for slots."""
        return self._waiting

    async def acquire(self, wanted: int = 1, *, deadline: float | None = None) -> bool:
        """Take `wanted` slots (at most `capacity`), waiting in line until `deadline` (event-loop time; None: as
        long as it takes). True: the slots are held, give them back with `release`; False: the deadline came
        first, or the line ahead cannot drain before it at the measured pace, and nothing is held."""
        wanted = max(1, min(wanted, self.capacity))
        if self._waiting == 0 and self._free >= wanted:
            self._free -= wanted
            return True
        loop = asyncio.get_running_loop()
        if deadline is not None:
            # Under overload a waiter that cannot make it is refused at once rather than after a futile wait:
            # the line ahead drains at capacity slots per hold time.
            drain = (self._queued + wanted) / self.capacity * self._hold
            if loop.time() + drain >= deadline:
                return False
        future: asyncio.Future[None] = loop.create_future()
        self._line.append((wanted, future))
        self._waiting += 1
        self._queued += wanted
        try:
            if deadline is None:
                await future
            else:
                async with asyncio.timeout_at(deadline):
                    await future
        except TimeoutError:
            if _granted(future):  # handed over in the same instant the deadline passed: it is ours
                return True
            self._give_up(future, wanted)
            return False
        except BaseException:
            if _granted(future):
                self.release(wanted)
            else:
                self._give_up(future, wanted)
            raise
        return True

    def release(self, count: int, held: float | None = None) -> None:
        """Give back slots taken with `acquire` (the same count it was asked for, capped at capacity); `held`:
        how long they were held, which paces the refusal of hopeless waiters (smoothed, 1/8 per run)."""
        self._free = min(self.capacity, self._free + max(1, min(count, self.capacity)))
        if held is not None and held >= 0:
            self._hold = held if self._hold == 0 else self._hold + (held - self._hold) / 8
        self._serve()

    def _give_up(self, future: asyncio.Future[None], wanted: int) -> None:
        """A waiter that was not granted leaves (its future may already be cancelled with its task)."""
        if not future.done():
            future.cancel()
        self._waiting -= 1
        self._queued -= wanted
        self._serve()  # it may have been the head that held the line

    def _serve(self) -> None:
        line = self._line
        while line:
            wanted, future = line[0]
            if future.done():  # gave up earlier
                line.popleft()
                continue
            if wanted > self._free:
                return
            line.popleft()
            self._free -= wanted
            self._waiting -= 1
            self._queued -= wanted
            future.set_result(None)


def _granted(future: asyncio.Future[None]) -> bool:
    return future.done() and not future.cancelled()


class Admission:
    """Every target's request slots (`capacity` each, `http.max_in_flight`), made on first use.

    One set per target, not one for all: a hanging target then holds only its own slots until its timeouts, and
    checks of healthy targets never wait behind it. The runner takes them before a run's deadline starts.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._slots: dict[str, Slots] = {}

    def slots_for(self, target_name: str) -> Slots:
        """The request slots of one target, made on first use (the same object for the same name)."""
        slots = self._slots.get(target_name)
        if slots is None:
            slots = self._slots[target_name] = Slots(self.capacity)
        return slots
