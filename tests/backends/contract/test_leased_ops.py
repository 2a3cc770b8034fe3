"""The backend contract: operations under a lease.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.job import Lease
from offload.core.states import State
from offload.errors import LeaseLost

from .helpers import (
    LEASE,
    MakeJob,
    claim_one,
    stored,
    submit_one,
)

LeasedOp = Callable[[Backend, Lease], Awaitable[object]]

LEASED_OPS: dict[str, LeasedOp] = {
    "complete": lambda b, lease: b.complete(lease, {"late": True}),
    "fail": lambda b, lease: b.fail(lease, {"type": "E", "message": "late"}),
    "fail_retry": lambda b, lease: b.fail(lease, {"type": "E", "message": "late"}, retry_in=5),
    "progress": lambda b, lease: b.progress(lease, 0.5, "late"),
    "mark_cancelled": lambda b, lease: b.mark_cancelled(lease),
    "release": lambda b, lease: b.release(lease),
}


@pytest.mark.parametrize("op", list(LEASED_OPS))
@pytest.mark.parametrize("staleness", ["wrong_token", "expired", "reclaimed", "finished"])
async def test_stale_lease_raises_lease_lost_and_changes_nothing(
    backend: Backend, clock: ManualClock, make: MakeJob, op: str, staleness: str
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    if staleness == "wrong_token":
        lease = Lease(record.id, record.token + 1)
    elif staleness == "expired":
        clock.advance(LEASE)
    elif staleness == "reclaimed":
        clock.advance(LEASE)
        await backend.reap()
        await claim_one(backend, worker="w2", idle=True)
    else:
        await backend.complete(lease, "first")
    before = await stored(backend, record.id)
    history_before = await backend.history(record.id)

    with pytest.raises(LeaseLost):
        await LEASED_OPS[op](backend, lease)

    assert await backend.get(record.id) == before
    assert await backend.history(record.id) == history_before


async def test_progress_is_recorded(backend: Backend, make: MakeJob) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    await backend.progress(lease, 0.25, "a quarter ✓")
    now = await stored(backend, record.id)
    assert (now.progress, now.progress_message) == (0.25, "a quarter ✓")
    assert now.status is State.RUNNING
    await backend.progress(lease, None, None)
    now = await stored(backend, record.id)
    assert (now.progress, now.progress_message) == (None, None)


async def test_complete_stores_the_result(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await submit_one(backend, make())
    _, lease = await claim_one(backend)
    clock.advance(2)
    await backend.complete(lease, {"pages": 3})
    done = await stored(backend, lease.job_id)
    assert done.status is State.SUCCEEDED
    assert done.result == {"pages": 3}
    assert done.finished_at == pytest.approx(clock.now())
