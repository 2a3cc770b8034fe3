"""One-round-trip pickup on Redis (lua/handoff.lua): a submit hands a job to an idle worker,
claimed exactly as CLAIM would claim it; what is handed and not received is never lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from offload.backends.redis import RedisBackend
from offload.core.job import JobFilter, Lease, NewJob, Transition
from offload.core.limits import Limits
from offload.core.states import State
from rediskit import TEST_REDIS, redis_namespace_url

LEASE = 30.0
ROOM = {"default": 1}


def job(n: int, **fields: Any) -> NewJob:
    return NewJob(id=f"{n:032x}", task="tasks.echo", args=[n], kwargs={}, **fields)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RedisBackend, RedisBackend]]:
    """A worker's backend and a submitter's, in one fresh namespace."""
    url = redis_namespace_url()
    worker, submitter = RedisBackend(url), RedisBackend(url)
    await worker.open()
    await submitter.open()
    yield worker, submitter
    await worker.close()
    await submitter.close()


async def go_idle(worker: RedisBackend, timeout: float = 10.0) -> asyncio.Task[None]:
    """Claim nothing, then wait for work (which registers the worker as idle)."""
    assert await worker.claim("w1", ROOM, 1, LEASE) == []
    waiting = asyncio.create_task(worker.wait_for_work(["default"], timeout))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    return waiting


def shape(t: Transition) -> tuple[Any, ...]:
    return (t.from_status, t.to_status, t.reason, t.attempt, t.token, t.worker_id)


def registration_keys(backend: RedisBackend) -> list[str]:
    client = redis.Redis.from_url(TEST_REDIS, decode_responses=True)
    try:
        found = []
        for pattern in ("idle:*", "idlew:*", "hand:*", "got:*"):
            found += client.keys(backend.root + pattern)
        return found
    finally:
        client.close()


async def test_a_handed_job_is_claimed_exactly_as_a_claim_would(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    worker, submitter = pair
    waiting = await go_idle(worker)
    started = time.monotonic()
    [stored] = await submitter.submit([job(1)])
    assert stored.status is State.QUEUED  # as submitted; the history says what followed
    await asyncio.wait_for(waiting, 2.0)
    assert time.monotonic() - started < 1.0
    [handed] = await worker.claim("w1", ROOM, 1, LEASE)  # no round trip: received already

    await submitter.submit([job(2)])  # the registration was used: a normal claim this time
    [claimed] = await worker.claim("w1", ROOM, 1, LEASE)
    for rec in (handed, claimed):
        assert (rec.status, rec.token, rec.attempts, rec.worker_id) == (State.RUNNING, 1, 1, "w1")
        assert rec.lease_until is not None
        assert rec.started_at is not None
        assert rec.lease_until - rec.started_at == pytest.approx(LEASE)
    a, b = await submitter.history(handed.id), await submitter.history(claimed.id)
    assert [shape(t) for t in a] == [shape(t) for t in b]
    listed = await submitter.list_jobs(JobFilter(status=State.RUNNING))
    assert {r.id for r in listed.jobs} == {handed.id, claimed.id}
    stats = {s.queue: s for s in await submitter.stats()}
    assert stats["default"].count(State.RUNNING) == 2
    assert stats["default"].count(State.QUEUED) == 0
    await worker.complete(Lease(handed.id, handed.token), "done")  # its token fences as usual
    assert (await submitter.get(handed.id)).status is State.SUCCEEDED  # type: ignore[union-attr]


async def test_a_handed_job_not_received_comes_with_the_next_claim_once(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    worker, submitter = pair
    assert await worker.claim("w1", ROOM, 1, LEASE) == []
    await worker.wait_for_work(["default"], 0.05)  # the registration outlives it (1 s)
    await submitter.submit([job(1)])
    assert (await submitter.get(job(1).id)).status is State.RUNNING  # type: ignore[union-attr]
    [rec] = await worker.claim("w1", ROOM, 1, LEASE)
    assert (rec.id, rec.token, rec.worker_id) == (job(1).id, 1, "w1")
    assert await worker.claim("w1", ROOM, 1, LEASE) == []  # not twice
    assert registration_keys(worker) == []


async def test_no_handoff_to_a_worker_whose_queues_have_work_or_limits(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    worker, submitter = pair
    waiting = await go_idle(worker)
    await submitter.submit(
        [job(1, limits=Limits(concurrency=1))]
    )  # limited: CLAIM decides, not the submit
    await asyncio.wait_for(waiting, 2.0)  # woken by the hint as before
    assert (await submitter.get(job(1).id)).status is State.QUEUED  # type: ignore[union-attr]
    [rec] = await worker.claim("w1", ROOM, 1, LEASE)
    assert rec.id == job(1).id


async def test_a_stopping_worker_unregisters_and_releases_what_it_never_started(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    worker, submitter = pair
    waiting = await go_idle(worker)
    await submitter.submit([job(1)])
    await asyncio.wait_for(waiting, 2.0)  # received, never claimed by the loop: not started
    await worker.close()
    rec = await submitter.get(job(1).id)
    assert rec is not None
    assert (rec.status, rec.attempts) == (State.QUEUED, 0)  # released, the attempt refunded
    reasons = [t.reason.value for t in await submitter.history(rec.id)]
    assert reasons == ["submitted", "claimed", "released"]
    assert registration_keys(worker) == []
    await submitter.submit([job(2)])  # nobody is registered: it waits in the queue
    assert (await submitter.get(job(2).id)).status is State.QUEUED  # type: ignore[union-attr]


async def test_a_job_received_a_while_ago_is_checked_and_renewed_by_the_claim(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    worker, submitter = pair
    waiting = await go_idle(worker)
    await submitter.submit([job(1)])
    await asyncio.wait_for(waiting, 2.0)
    first = await submitter.get(job(1).id)
    await asyncio.sleep(0.1)  # longer than STALE: the claim asks the CLAIM script
    [rec] = await worker.claim("w1", ROOM, 1, LEASE)
    assert first is not None
    assert first.lease_until is not None
    assert rec.lease_until is not None
    assert (rec.id, rec.token) == (job(1).id, 1)
    assert rec.lease_until > first.lease_until  # renewed from this claim
    assert await worker.claim("w1", ROOM, 1, LEASE) == []


async def test_a_cancelled_wait_ends_the_registration_at_once(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    worker, submitter = pair
    waiting = await go_idle(worker)
    waiting.cancel()  # what a stopping worker does: it claims nothing more
    await asyncio.gather(waiting, return_exceptions=True)
    await asyncio.sleep(0.1)
    await submitter.submit([job(1)])
    assert (await submitter.get(job(1).id)).status is State.QUEUED  # type: ignore[union-attr]
    assert registration_keys(worker) == []


async def test_a_foreign_key_in_the_way_of_a_handoff_breaks_nothing(
    pair: tuple[RedisBackend, RedisBackend],
) -> None:
    worker, submitter = pair
    client = redis.Redis.from_url(TEST_REDIS, decode_responses=True)
    try:
        client.set(worker.root + "hand:w1", "not a list")  # BLMOVE fails: WRONGTYPE
        assert await worker.claim("w1", ROOM, 1, LEASE) == []
        started = time.monotonic()
        await worker.wait_for_work(["default"], 0.3)
        assert time.monotonic() - started >= 0.25  # waited for hints, did not spin
        await submitter.submit([job(1)])  # still registered: not handed, queued as before
        assert (await submitter.get(job(1).id)).status is State.QUEUED  # type: ignore[union-attr]
        assert [r.id for r in await worker.claim("w1", ROOM, 1, LEASE)] == [job(1).id]
    finally:
        client.delete(worker.root + "hand:w1")
        client.close()
