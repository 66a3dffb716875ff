"""Tests for monitor/admission.py: per-target request slots (first come, first served, bounded waits)."""

from __future__ import annotations

import asyncio

from monitor.admission import Admission, Slots
from monitor.core.config import Config


def _config(max_in_flight: int) -> Config:
    return Config.model_validate({
        "http": {"max_in_flight": max_in_flight},
        "targets": {"api": {"base_url": "http://127.0.0.1:9"}, "voice": {"base_url": "http://127.0.0.1:10"}},
    })


def _in(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_slots_for_has_max_in_flight_slots_per_target() -> None:
    """The runner's admission gives each target its own http.max_in_flight slots: filling one target's leaves
    another's free."""
    admission = Admission(_config(3).http.max_in_flight)
    api = admission.slots_for("api")
    assert [True, True, True] == [await api.acquire(deadline=_in(1)) for _ in range(3)]
    assert (0, 3) == (api.free, admission.slots_for("voice").free)


async def test_slots_for_is_made_once_per_name() -> None:
    """The same name always gets the same slots (shared by all checks of a target); names differ."""
    admission = Admission(2)
    assert admission.slots_for("a") is admission.slots_for("a")
    assert admission.slots_for("a") is not admission.slots_for("b")


async def test_a_wait_past_its_deadline_holds_nothing() -> None:
    """With every slot held, a waiter gives up at its deadline: False, nothing taken, nobody left waiting."""
    slots = Slots(1)
    assert True is await slots.acquire()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert False is await slots.acquire(deadline=_in(0.05))
    # Not before its deadline; the upper bound only proves it did not wait on (generous for a busy machine).
    assert 0.05 <= loop.time() - started < 1.0
    assert (0, 0) == (slots.free, slots.waiting)
    slots.release(1)
    assert 1 == slots.free


async def test_a_deadline_already_past_gets_free_slots_and_never_waits() -> None:
    """Free slots are handed out even to a run whose window has closed; with none free it is refused at once."""
    slots = Slots(1)
    past = _in(-1)
    assert True is await slots.acquire(deadline=past)
    assert False is await slots.acquire(deadline=past)
    assert 0 == slots.waiting


async def test_first_come_first_served_and_a_big_waiter_is_not_overtaken() -> None:
    """Waiters are served in arrival order; one wanting 3 of 4 slots is not overtaken by later 1-slot waiters."""
    slots = Slots(4)
    assert True is await slots.acquire(4)
    order: list[str] = []

    async def take(name: str, wanted: int) -> None:
        assert True is await slots.acquire(wanted, deadline=_in(5))
        order.append(name)

    tasks = [asyncio.create_task(take("big", 3))]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(take(f"small{i}", 1)) for i in range(2)]
    await asyncio.sleep(0)
    assert 3 == slots.waiting
    slots.release(2)  # 2 free: the head wants 3, so nobody moves
    await asyncio.sleep(0)
    assert [] == order
    slots.release(2)  # 4 free: big takes 3, small0 takes 1, small1 waits
    await asyncio.sleep(0)
    assert ["big", "small0"] == order
    slots.release(1)
    await asyncio.gather(*tasks)
    assert ["big", "small0", "small1"] == order
    assert 0 == slots.free


async def test_a_waiter_that_gives_up_at_the_head_lets_the_next_in() -> None:
    """The head of the line leaving (deadline) unblocks the waiters behind it that fit."""
    slots = Slots(2)
    assert True is await slots.acquire(1)
    head = asyncio.create_task(slots.acquire(2, deadline=_in(0.05)))
    await asyncio.sleep(0)
    behind = asyncio.create_task(slots.acquire(1, deadline=_in(5)))
    await asyncio.sleep(0)
    assert False is await head
    assert True is await behind
    assert 0 == slots.free


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    """Cancelling a waiting task (shutdown) removes it from the line; slots stay balanced."""
    slots = Slots(1)
    assert True is await slots.acquire()
    waiter = asyncio.create_task(slots.acquire(deadline=_in(5)))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert 0 == slots.waiting
    slots.release(1)
    assert 1 == slots.free


async def test_asking_for_more_than_capacity_takes_all_of_them() -> None:
    """A run that sends more requests than there are slots holds every slot, and waits for them, never forever."""
    slots = Slots(2)
    assert True is await slots.acquire(5, deadline=_in(1))
    assert 0 == slots.free
    slots.release(5)
    assert 2 == slots.free


async def test_a_waiter_that_cannot_make_it_at_the_measured_pace_is_refused_at_once() -> None:
    """Runs have held their slot 1 s each; with one slot held and one run waiting, a newcomer whose window closes
    in 0.5 s would wait about 2 s: refused at once (no futile wait), while one with a 5 s window waits in line."""
    slots = Slots(1)
    assert True is await slots.acquire()
    slots.release(1, held=1.0)
    assert True is await slots.acquire()
    ahead = asyncio.create_task(slots.acquire(deadline=_in(10)))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert False is await slots.acquire(deadline=_in(0.5))
    # Refused at once rather than at its 0.5 s deadline: any answer well before the deadline proves it (generous for
    # a busy machine).
    assert loop.time() - started < 0.4
    patient = asyncio.create_task(slots.acquire(deadline=_in(5)))
    await asyncio.sleep(0)
    assert 2 == slots.waiting
    slots.release(1, held=1.0)
    assert True is await ahead
    slots.release(1)
    assert True is await patient
