"""The backend contract: a workflow step's hand-off, its success and successors in one operation.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.states import Reason, State
from offload.errors import IdempotencyConflict, LeaseLost

from .helpers import (
    ALL,
    LEASE,
    MakeJob,
    claim_one,
    stored,
    submit_one,
)


async def test_complete_then_stores_the_success_and_the_successors_together(
    backend: Backend, make: MakeJob
) -> None:
    await submit_one(backend, make())
    _, lease = await claim_one(backend)
    b, c = make(queue="next"), make(queue="next", priority=3)
    await backend.complete(lease, 1, then=[b, c])
    assert (await stored(backend, lease.job_id)).status is State.SUCCEEDED
    for job in (b, c):
        record = await stored(backend, job.id)
        assert (record.status, record.queue, record.priority) == (
            State.QUEUED,
            "next",
            job.priority,
        )
        assert [t.reason for t in await backend.history(job.id)] == [Reason.SUBMITTED]
    claimed = await backend.claim("w2", {"next": 10}, 10, LEASE)
    assert [r.id for r in claimed] == [c.id, b.id]


async def test_a_step_whose_worker_dies_after_the_hand_off_never_runs_again(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    """Killed between "step done" and "next step claimed": the step is done for good."""
    step = await submit_one(backend, make())
    _, lease = await claim_one(backend, worker="w1")
    nxt = make()
    await backend.complete(lease, "a", then=[nxt])
    # w1 dies here; the next step has not been claimed yet.
    for _ in range(4):
        clock.advance(LEASE)
        await backend.reap()
    [claimed] = await backend.claim("w2", ALL, 10, LEASE)
    assert claimed.id == nxt.id
    done = await stored(backend, step.id)
    assert (done.status, done.attempts, done.result) == (State.SUCCEEDED, 1, "a")


@pytest.mark.parametrize("staleness", ["expired", "reclaimed"])
async def test_complete_then_under_a_lost_lease_stores_nothing(
    backend: Backend, clock: ManualClock, make: MakeJob, staleness: str
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    clock.advance(LEASE)
    if staleness == "reclaimed":
        await backend.reap()
        await claim_one(backend, worker="w2", idle=True)
    before = await stored(backend, record.id)
    nxt = make(idempotency_key="next-step", fingerprint="f")
    with pytest.raises(LeaseLost):
        await backend.complete(lease, "late", then=[nxt])
    assert await backend.get(nxt.id) is None
    assert await backend.get(record.id) == before
    again = await submit_one(backend, make(idempotency_key="next-step", fingerprint="other"))
    assert again.id != nxt.id  # the key was not taken either


async def test_complete_then_leaves_an_existing_successor_as_it_is(
    backend: Backend, make: MakeJob
) -> None:
    """A step that ran twice (its lease was lost once) hands off to the job stored first."""
    await submit_one(backend, make(queue="a"))
    nxt = make(queue="b", idempotency_key="wf:x:1", fingerprint="f")
    await submit_one(backend, nxt)
    [running] = await backend.claim("w2", {"b": 1}, 1, LEASE)
    _, lease = await claim_one(backend, queue="a")
    await backend.complete(lease, "again", then=[nxt])
    assert await stored(backend, nxt.id) == running
    assert len(await backend.history(nxt.id)) == 2  # submitted, claimed


async def test_complete_then_with_a_successor_that_cannot_be_stored_writes_nothing(
    backend: Backend, make: MakeJob
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    before = await stored(backend, record.id)
    fine, bad = make(), make(delay=float("nan"))
    with pytest.raises(ValueError, match="delay"):
        await backend.complete(lease, "x", then=[fine, bad])
    assert await backend.get(fine.id) is None
    assert await backend.get(bad.id) is None
    assert await backend.get(record.id) == before


async def test_complete_then_with_a_conflicting_key_writes_nothing(
    backend: Backend, make: MakeJob
) -> None:
    other = await submit_one(backend, make(queue="o", idempotency_key="k", fingerprint="one"))
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    before = await stored(backend, record.id)
    fresh, clash = make(), make(idempotency_key="k", fingerprint="two")
    with pytest.raises(IdempotencyConflict):
        await backend.complete(lease, "x", then=[fresh, clash])
    assert await backend.get(fresh.id) is None
    assert await backend.get(clash.id) is None
    assert await backend.get(record.id) == before  # still running under its lease
    await backend.complete(lease, "x")
    assert (await stored(backend, other.id)).status is State.QUEUED
