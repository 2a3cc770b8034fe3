"""The backend contract: claim.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.states import State

from .helpers import (
    ALL,
    LEASE,
    MakeJob,
    claim_one,
    nothing_claimable,
    stored,
    submit_one,
)


async def test_claim_order_is_priority_then_due_time_then_id(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    t0 = clock.now()
    # Submitted out of order on purpose: only priority, due time and id may decide.
    await backend.submit(
        [
            make(id="c" * 32, priority=0),  # same due time as a: the id decides
            make(id="a" * 32, priority=0),
            make(id="b" * 32, priority=5),
            make(id="d" * 32, priority=0, run_at=t0 - 10),  # due earlier
            make(id="0" * 32, priority=5, delay=5),  # high priority, due later
            make(id="e" * 32, priority=-1),
        ]
    )
    clock.advance(5)
    order = [(await claim_one(backend))[0].id[0] for _ in range(6)]
    assert order == ["b", "0", "d", "a", "c", "e"]
    assert await nothing_claimable(backend)


async def test_claim_respects_per_queue_caps_and_the_total_limit(
    backend: Backend, make: MakeJob
) -> None:
    await backend.submit([make(queue=q) for q in ("a", "b", "c") for _ in range(5)])

    first = await backend.claim("w1", {"a": 2, "b": 1}, 10, LEASE)
    assert sorted(r.queue for r in first) == ["a", "a", "b"]

    second = await backend.claim("w1", {"a": 5, "b": 5, "c": 0}, 4, LEASE)
    assert len(second) == 4
    assert {r.queue for r in second} <= {"a", "b"}

    assert await backend.claim("w1", {"c": 0}, 10, LEASE) == []
    assert await backend.claim("w1", {"nope": 3}, 10, LEASE) == []
    assert await backend.claim("w1", {"c": 3}, 0, LEASE) == []
    rest = await backend.claim("w1", {"a": 10, "b": 10, "c": 10}, 100, LEASE)
    assert len(rest) == 15 - 3 - 4
    assert await nothing_claimable(backend, {"a": 9, "b": 9, "c": 9})


async def test_claim_starts_a_lease(backend: Backend, clock: ManualClock, make: MakeJob) -> None:
    submitted = await submit_one(backend, make())
    clock.advance(3)
    record, _ = await claim_one(backend, worker="worker-1", lease=12.5)
    assert record.id == submitted.id
    assert record.status is State.RUNNING
    assert record.attempts == 1
    assert record.token > submitted.token
    assert record.worker_id == "worker-1"
    assert record.lease_until == pytest.approx(clock.now() + 12.5)
    assert record.started_at == pytest.approx(clock.now())
    assert await backend.get(record.id) == record


async def test_every_claim_gets_a_higher_token(backend: Backend, make: MakeJob) -> None:
    job = await submit_one(backend, make())
    tokens = [job.token]
    for _ in range(3):
        _, lease = await claim_one(backend)
        tokens.append(lease.token)
        await backend.fail(lease, {"type": "E", "message": "again"}, retry_in=0)
    assert tokens == sorted(set(tokens))


async def test_concurrent_claims_never_return_the_same_job(backend: Backend, make: MakeJob) -> None:
    ids = {r.id for r in await backend.submit([make() for _ in range(20)])}
    batches = await asyncio.gather(
        *(backend.claim(f"w{n}", ALL, 3, LEASE) for n in range(10)),
    )
    claimed = [r.id for batch in batches for r in batch]
    assert len(claimed) == len(set(claimed)) == 20
    assert set(claimed) == ids
    workers = {r.id: r.worker_id for batch in batches for r in batch}
    for job_id in ids:
        assert (await stored(backend, job_id)).worker_id == workers[job_id]
