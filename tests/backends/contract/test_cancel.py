"""The backend contract: cancel.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.states import Reason, State
from offload.errors import InvalidTransition, JobNotFound

from .helpers import (
    LEASE,
    MakeJob,
    claim_one,
    nothing_claimable,
    stored,
    submit_one,
)


@pytest.mark.parametrize("delay", [0.0, 60.0], ids=["queued", "scheduled"])
async def test_cancel_of_a_pending_job_cancels_it(
    backend: Backend, clock: ManualClock, make: MakeJob, delay: float
) -> None:
    record = await submit_one(backend, make(delay=delay))
    cancelled = await backend.cancel(record.id)
    assert cancelled.status is State.CANCELLED
    assert await backend.get(record.id) == cancelled
    assert (await backend.history(record.id))[-1].reason is Reason.CANCELLED
    clock.advance(delay + 1)
    assert await nothing_claimable(backend)


async def test_cancel_of_a_running_job_requests_it(backend: Backend, make: MakeJob) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    requested = await backend.cancel(record.id)
    assert requested.status is State.RUNNING
    assert requested.cancel_requested
    assert (await stored(backend, record.id)).cancel_requested
    assert (await backend.renew("w1", [lease], LEASE)).cancel_requested == {record.id}
    assert (await backend.cancel(record.id)).status is State.RUNNING  # asking twice is fine

    await backend.mark_cancelled(lease, {"type": "Cancelled", "message": "stopped"})
    cancelled = await stored(backend, lease.job_id)
    assert cancelled.status is State.CANCELLED
    assert cancelled.error == {"type": "Cancelled", "message": "stopped"}
    assert (await backend.history(record.id))[-1].reason is Reason.CANCELLED


@pytest.mark.parametrize("end", [State.SUCCEEDED, State.FAILED, State.CANCELLED])
async def test_cancel_of_a_finished_job_is_an_invalid_transition(
    backend: Backend, make: MakeJob, end: State
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    if end is State.SUCCEEDED:
        await backend.complete(lease, None)
    elif end is State.FAILED:
        await backend.fail(lease, {"type": "E", "message": "x"})
    else:
        await backend.mark_cancelled(lease)
    before = await stored(backend, record.id)
    with pytest.raises(InvalidTransition):
        await backend.cancel(record.id)
    assert await backend.get(record.id) == before


async def test_unknown_job(backend: Backend) -> None:
    with pytest.raises(JobNotFound):
        await backend.cancel("f" * 32)
    assert await backend.get("f" * 32) is None
    assert await backend.history("f" * 32) == []
