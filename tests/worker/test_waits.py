"""The claim loop's waits (offload.worker.waits): each ends at once when the worker stops, and
an idle worker's wait for work hands over to the claim without a stop task per wait."""

from __future__ import annotations

import asyncio
import time

import pytest

from offload.backends.redis.wake import Wakeups
from offload.worker.waits import Waits


async def test_stop_ends_the_wait_for_work_at_once() -> None:
    stopping = asyncio.Event()
    waits = Waits(stopping)
    waiting = asyncio.create_task(waits.for_work(asyncio.sleep(30)))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    stopping.set()
    waits.stop()
    await asyncio.wait_for(waiting, 1.0)
    assert time.monotonic() - started < 0.5


async def test_no_wait_starts_once_stopping() -> None:
    stopping = asyncio.Event()
    stopping.set()
    waits = Waits(stopping)
    started = time.monotonic()
    await waits.for_room(30)
    await waits.pause(30)
    slow = asyncio.sleep(30)
    await waits.for_work(slow)  # closed, never awaited (no "never awaited" warning either)
    assert time.monotonic() - started < 0.5


async def test_a_freed_slot_ends_the_wait_for_room() -> None:
    waits = Waits(asyncio.Event())
    waiting = asyncio.create_task(waits.for_room(30))
    await asyncio.sleep(0.01)
    waits.room_freed()
    await asyncio.wait_for(waiting, 1.0)


async def test_errors_of_the_wait_for_work_are_left_to_the_next_claim() -> None:
    async def broken() -> None:
        raise ConnectionError("down")

    await Waits(asyncio.Event()).for_work(broken())


async def test_cancelling_the_claim_loop_still_cancels_it() -> None:
    waits = Waits(asyncio.Event())
    loop_task = asyncio.create_task(waits.for_work(asyncio.sleep(30)))
    await asyncio.sleep(0.01)
    loop_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop_task


async def test_a_wake_up_hint_ends_the_wait_and_is_kept_until_cleared() -> None:
    wake = Wakeups()
    waiting = asyncio.create_task(wake.wait(30))
    await asyncio.sleep(0.01)
    wake.hint()
    await asyncio.wait_for(waiting, 1.0)
    await asyncio.wait_for(wake.wait(30), 1.0)  # a hint since the last clear: no wait
    wake.clear()
    started = time.monotonic()
    await wake.wait(0.05)  # no hint since: waits out its timeout
    assert time.monotonic() - started >= 0.04
