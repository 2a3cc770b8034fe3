"""The backend contract: reap.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.states import Reason, State
from offload.errors import LeaseLost

from .helpers import (
    ALL,
    LEASE,
    MakeJob,
    claim_one,
    lose_once,
    nothing_claimable,
    stored,
    submit_one,
    worker_info,
)


async def test_reap_requeues_an_expired_lease(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await backend.submit([make(), make()])
    expired, _ = await claim_one(backend, lease=10)
    alive, _ = await claim_one(backend, lease=100)
    clock.advance(9)
    assert await backend.reap() == 0
    clock.advance(1)
    assert await backend.reap() == 1
    requeued = await stored(backend, expired.id)
    assert (requeued.status, requeued.losses, requeued.attempts) == (State.QUEUED, 1, 1)
    last = (await backend.history(expired.id))[-1]
    assert (last.from_status, last.to_status, last.reason) == (
        State.RUNNING,
        State.QUEUED,
        Reason.LEASE_EXPIRED,
    )
    assert (await stored(backend, alive.id)).status is State.RUNNING
    assert await backend.reap() == 0


async def test_third_lost_lease_fails_the_job_as_worker_lost(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    record = await submit_one(backend, make())
    for loss in (1, 2):
        await claim_one(backend, idle=True)
        clock.advance(LEASE)
        assert await backend.reap() == 1
        assert (await stored(backend, record.id)).losses == loss
    await claim_one(backend, idle=True)
    clock.advance(LEASE)
    assert await backend.reap() == 1
    failed = await stored(backend, record.id)
    assert failed.status is State.FAILED
    assert failed.losses == 3
    assert failed.error is not None
    assert failed.error["type"] == "WorkerLost"
    reasons = [e.reason for e in await backend.history(record.id)]
    assert reasons == [
        Reason.SUBMITTED,
        *[Reason.CLAIMED, Reason.LEASE_EXPIRED] * 2,
        Reason.CLAIMED,
        Reason.WORKER_LOST,
    ]
    assert await nothing_claimable(backend)


async def test_reaped_job_fences_out_its_old_owner(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await submit_one(backend, make())
    record, old = await claim_one(backend, worker="old")
    clock.advance(LEASE)
    await backend.reap()
    with pytest.raises(LeaseLost):
        await backend.complete(old, "stale")
    again, new = await claim_one(backend, worker="new", idle=True)
    assert again.token > record.token
    with pytest.raises(LeaseLost):
        await backend.complete(old, "stale")
    await backend.complete(new, "fresh")
    done = await stored(backend, new.job_id)
    assert (done.result, done.worker_id) == ("fresh", "new")


async def test_reclaim_dead_reaps_the_jobs_of_workers_whose_heartbeat_lapsed(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    """Before its lease ends, a job of a worker with no live heartbeat goes back to the queue
    (and its old owner is fenced out); a live worker's job, and a job claimed less than
    ``grace`` ago, stay running."""
    await backend.submit([make(), make(), make()])
    await backend.heartbeat(worker_info("dead"), ttl=5)
    await backend.heartbeat(worker_info("alive"), ttl=5)
    lost, old = await claim_one(backend, worker="dead", lease=100)
    kept, _ = await claim_one(backend, worker="alive", lease=100)
    clock.advance(4)
    assert await backend.reclaim_dead(grace=5) == 0  # dead's heartbeat is still live
    await backend.heartbeat(worker_info("alive"), ttl=5)
    clock.advance(2)  # dead's heartbeat lapsed 1 s ago; alive's is 2 s old
    fresh, _ = await claim_one(backend, worker="dead", lease=100)
    assert await backend.reclaim_dead(grace=5) == 1
    requeued = await stored(backend, lost.id)
    assert (requeued.status, requeued.losses) == (State.QUEUED, 1)
    assert (await backend.history(lost.id))[-1].reason is Reason.LEASE_EXPIRED
    assert (await stored(backend, kept.id)).status is State.RUNNING
    assert (await stored(backend, fresh.id)).status is State.RUNNING  # claimed too recently
    with pytest.raises(LeaseLost):
        await backend.complete(old, "stale")


async def test_a_suspect_is_claimed_only_by_an_idle_worker_and_alone(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    suspect = await lose_once(backend, clock, make(priority=9))
    innocent = await backend.submit([make(), make()])

    busy = await backend.claim("busy", ALL, 10, LEASE)
    assert {r.id for r in busy} == {r.id for r in innocent}
    await backend.submit([make(), make()])
    alone = await backend.claim("idle", ALL, 10, LEASE, idle=True)
    assert [r.id for r in alone] == [suspect.id]
    assert (alone[0].attempts, alone[0].losses) == (2, 1)


async def test_an_idle_claim_takes_innocent_jobs_first_in_order(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    suspect = await lose_once(backend, clock, make(priority=0))
    first, second = await backend.submit([make(priority=5), make(priority=5)])
    claimed = await backend.claim("idle", ALL, 10, LEASE, idle=True)
    assert [r.id for r in claimed] == [first.id, second.id]  # no suspect among innocents
    assert (await stored(backend, suspect.id)).status is State.QUEUED
    assert [r.id for r in await backend.claim("idle", ALL, 10, LEASE, idle=True)] == [suspect.id]


async def test_an_idle_claim_skips_a_suspect_behind_innocent_jobs_within_a_queue_cap(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    suspect = await lose_once(backend, clock, make(priority=3))
    high, low = await backend.submit([make(priority=5), make(priority=1)])
    claimed = await backend.claim("idle", {"default": 2}, 10, LEASE, idle=True)
    assert [r.id for r in claimed] == [high.id, low.id]
    assert (await stored(backend, suspect.id)).status is State.QUEUED
