"""The backend contract: wait_for_work.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

import asyncio
import time

from offload.backends.base import Backend
from offload.core.clock import ManualClock

from .helpers import (
    MakeJob,
    lose_once,
    submit_one,
)


async def test_wait_for_work_wakes_when_a_job_is_submitted(backend: Backend, make: MakeJob) -> None:
    waiting = asyncio.create_task(backend.wait_for_work(["default"], timeout=10.0))
    for _ in range(5):
        await asyncio.sleep(0)  # let the waiter start waiting
    started = time.monotonic()
    await submit_one(backend, make())
    await asyncio.wait_for(waiting, timeout=8.0)
    assert time.monotonic() - started < 8.0


async def test_wait_for_work_returns_at_once_when_work_is_queued(
    backend: Backend, make: MakeJob
) -> None:
    await submit_one(backend, make())
    started = time.monotonic()
    await backend.wait_for_work(["default"], timeout=10.0)
    assert time.monotonic() - started < 8.0


async def test_wait_for_work_times_out_when_nothing_comes(backend: Backend) -> None:
    started = time.monotonic()
    await backend.wait_for_work(["default"], timeout=0.2)
    elapsed = time.monotonic() - started
    assert 0.1 <= elapsed < 10.0


async def test_wait_for_work_is_not_woken_by_a_suspect(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await lose_once(backend, clock, make())
    started = time.monotonic()
    await backend.wait_for_work(["default"], timeout=0.2)
    assert 0.1 <= time.monotonic() - started < 10.0
