"""The backend contract: a requested cancel is honoured when the job would otherwise run again.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.job import Lease
from offload.core.states import Reason, State

from .helpers import (
    ALL,
    LEASE,
    MakeJob,
    claim_one,
    lose_once,
    stored,
)

REQUEUE_MOVES: dict[str, Callable[[Backend, Lease, ManualClock], Awaitable[Any]]] = {
    "retry now": lambda b, lease, c: b.fail(lease, {"message": "x"}, retry_in=0),
    "retry later": lambda b, lease, c: b.fail(lease, {"message": "x"}, retry_in=5),
    "release": lambda b, lease, c: b.release(lease),
}


@pytest.mark.parametrize("move", list(REQUEUE_MOVES))
async def test_a_cancel_requested_job_is_cancelled_instead_of_requeued(
    backend: Backend, clock: ManualClock, make: MakeJob, move: str
) -> None:
    await backend.submit([make()])
    record, lease = await claim_one(backend)
    await backend.cancel(record.id)
    await REQUEUE_MOVES[move](backend, lease, clock)
    job = await stored(backend, record.id)
    assert job.status is State.CANCELLED
    last = (await backend.history(record.id))[-1]
    assert (last.reason, last.from_status, last.worker_id) == (
        Reason.CANCELLED,
        State.RUNNING,
        record.worker_id,
    )
    assert await backend.claim("w", ALL, 10, LEASE, idle=True) == []


async def test_a_cancel_requested_job_is_not_rerun_after_its_worker_dies(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await backend.submit([make()])
    record, _ = await claim_one(backend)
    await backend.cancel(record.id)
    clock.advance(LEASE)
    assert await backend.reap() == 1
    job = await stored(backend, record.id)
    assert (job.status, job.losses) == (State.CANCELLED, 1)
    assert (await backend.history(record.id))[-1].reason is Reason.CANCELLED


async def test_a_busy_worker_takes_a_suspect_that_waited_a_lease_alone(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    suspect = await lose_once(backend, clock, make())
    assert await backend.claim("busy", ALL, 10, LEASE) == []  # too fresh for a busy worker
    clock.advance(LEASE)
    await backend.submit([make(), make()])
    assert [r.id for r in await backend.claim("busy", ALL, 10, LEASE)] == [suspect.id]
