"""The backend contract: retention.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.job import JobFilter, JobRecord, Lease, NewJob
from offload.core.states import State

from .helpers import (
    LEASE,
    MakeJob,
    stored,
    submit_one,
)


async def finish_one(backend: Backend, job: NewJob, how: str = "complete") -> JobRecord:
    """Submit ``job`` and take it to an end: complete, fail, or cancel while queued."""
    record = await submit_one(backend, job)
    if how == "cancel":
        return await backend.cancel(record.id)
    [claimed] = await backend.claim("w1", {record.queue: 1}, 1, LEASE)
    lease = Lease(claimed.id, claimed.token)
    if how == "fail":
        await backend.fail(lease, {"type": "E", "message": "no"})
    else:
        await backend.complete(lease, "done")
    return await stored(backend, lease.job_id)


async def test_prune_deletes_only_ended_jobs_whose_ttl_ran_out(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    expiring = [await finish_one(backend, make(result_ttl=10), how)
                for how in ("complete", "fail", "cancel")]  # fmt: skip
    forever = await finish_one(backend, make())  # no result_ttl: kept
    later = await finish_one(backend, make(result_ttl=100))
    running = await submit_one(backend, make(result_ttl=10, queue="slow"))
    await backend.claim("w1", {"slow": 1}, 1, LEASE)
    queued = await submit_one(backend, make(result_ttl=10))
    kept = [forever, later, running, queued]

    clock.advance(9.5)
    assert await backend.prune() == 0
    clock.advance(0.5)
    assert await backend.prune() == 3
    assert await backend.prune() == 0

    for gone in expiring:
        assert await backend.get(gone.id) is None
        assert await backend.history(gone.id) == []
    for job in kept:
        assert (await stored(backend, job.id)).status is not None
        assert await backend.history(job.id) != []
    listed = await backend.list_jobs(JobFilter(limit=100))
    assert {j.id for j in listed.jobs} == {j.id for j in kept}
    counts = {s.queue: dict(s.counts) for s in await backend.stats()}
    counts = {q: {st: n for st, n in c.items() if n} for q, c in counts.items()}
    assert counts == {
        "default": {State.SUCCEEDED: 2, State.QUEUED: 1},
        "slow": {State.RUNNING: 1},
    }


async def test_prune_works_in_bounded_batches(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    for _ in range(5):
        await finish_one(backend, make(result_ttl=0))
    clock.advance(0.001)
    assert [await backend.prune(limit=2) for _ in range(4)] == [2, 2, 1, 0]


async def test_a_pruned_jobs_idempotency_key_names_a_new_job(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    first = await finish_one(backend, make(result_ttl=1, idempotency_key="k", fingerprint="f"))
    clock.advance(2)
    assert await backend.prune() == 1
    again = await submit_one(backend, make(idempotency_key="k", fingerprint="f"))
    assert again.id != first.id
    assert again.status is State.QUEUED
