"""A PostgreSQL worker draining a busy queue: one statement per claim and one per group of
finishes, with every guarantee of the longer paths (claim order, promotions, caps, leases and
fencing tokens, history rows)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from offload.backends.postgres import PostgresBackend
from offload.backends.postgres import backend as backend_module
from offload.backends.postgres import finish as finish_module
from offload.backends.postgres.claim import claim_plan
from offload.backends.postgres.group import Group
from offload.backends.postgres.plan import Query, Rows
from offload.core.clock import ManualClock
from offload.core.job import Lease, NewJob
from offload.core.limits import Limits
from offload.core.states import Reason, State
from offload.errors import LeaseLost
from pgkit import postgres_schema_url

LEASE = 30.0


def job(n: int, **fields: object) -> NewJob:
    return NewJob(id=f"{n:032x}", task="tasks.echo", args=[n], kwargs={}, **fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def backend(clock: ManualClock) -> AsyncIterator[PostgresBackend]:
    store = PostgresBackend.from_url(postgres_schema_url(), clock=clock)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _tap(plan: Generator[Query, Rows, Any], seen: list[str]) -> Generator[Query, Rows, Any]:
    try:
        query = next(plan)
        while True:
            seen.append(query.sql)
            query = plan.send((yield query))
    except StopIteration as done:
        return done.value


@pytest.fixture
def claim_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements every claim of the backend sends, in order."""
    seen: list[str] = []
    monkeypatch.setattr(backend_module, "claim_plan", lambda *args: _tap(claim_plan(*args), seen))
    return seen


async def test_a_busy_queue_is_claimed_in_one_statement_in_claim_order(
    backend: PostgresBackend, claim_statements: list[str]
) -> None:
    await backend.submit([job(n, priority=n % 3) for n in range(9)])
    jobs = await backend.claim("w1", {"default": 5}, 5, LEASE)
    assert len(claim_statements) == 1
    assert [(j.priority, j.id) for j in jobs] == sorted(
        ((j.priority, j.id) for j in jobs), key=lambda p: (-p[0], p[1])
    )
    assert [j.priority for j in jobs] == [2, 2, 2, 1, 1]
    now = await backend.now()
    for claimed in jobs:
        assert claimed.status is State.RUNNING
        assert claimed.token == 1
        assert claimed.worker_id == "w1"
        assert claimed.lease_until == pytest.approx(now + LEASE)
        history = await backend.history(claimed.id)
        assert [(t.to_status, t.reason, t.token) for t in history][-1] == (
            State.RUNNING,
            Reason.CLAIMED,
            1,
        )
    rest = await backend.claim("w2", {"default": 10}, 10, LEASE)
    assert {j.id for j in rest}.isdisjoint(j.id for j in jobs)
    assert len(rest) == 4


async def test_a_due_scheduled_job_is_promoted_and_claimed_before_a_lower_one(
    backend: PostgresBackend, clock: ManualClock, claim_statements: list[str]
) -> None:
    await backend.submit([job(1, priority=0)])
    await backend.submit([job(2, priority=5, delay=10.0)])
    assert (await backend.get(job(2).id)).status is State.SCHEDULED  # type: ignore[union-attr]
    clock.advance(11.0)
    first = await backend.claim("w1", {"default": 1}, 1, LEASE)
    assert [j.id for j in first] == [job(2).id]  # the promoted one: higher priority
    assert len(claim_statements) == 2  # promoted by the first, claimed by the second
    reasons = [t.reason for t in await backend.history(job(2).id)]
    assert reasons == [Reason.SUBMITTED, Reason.PROMOTED, Reason.CLAIMED]
    claim_statements.clear()
    second = await backend.claim("w1", {"default": 1}, 1, LEASE)
    assert [j.id for j in second] == [job(1).id]
    assert len(claim_statements) == 1


async def test_limited_jobs_take_the_locked_claim_and_keep_their_cap(
    backend: PostgresBackend, claim_statements: list[str]
) -> None:
    capped = Limits(concurrency=1)
    await backend.submit([job(n, limits=capped) for n in range(3)])
    await backend.submit([job(n) for n in range(10, 13)])
    jobs = await backend.claim("w1", {"default": 10}, 10, LEASE)
    assert len(claim_statements) > 1  # the probe said limited: the limits lock was taken
    assert sorted(j.id for j in jobs) == sorted([job(0).id, *(job(n).id for n in range(10, 13))])
    assert await backend.claim("w2", {"default": 10}, 10, LEASE) == []  # the cap holds


async def test_finishes_handed_in_together_share_one_statement(
    backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> None:
    await backend.submit([job(n) for n in range(12)])
    jobs = await backend.claim("w1", {"default": 12}, 12, LEASE)
    groups: list[int] = []
    group_plan = finish_module.group

    def counted(names: Any, now: Any, items: list[Any]) -> Any:
        groups.append(len(items))
        return group_plan(names, now, items)

    monkeypatch.setattr(finish_module, "group", counted)
    clock.advance(1.0)
    leases = [Lease(j.id, j.token) for j in jobs]
    stale = Lease(leases[3].job_id, leases[3].token + 1)
    calls = [backend.complete(lease, {"n": i}) for i, lease in enumerate(leases) if i != 3]
    calls.append(backend.complete(stale, "never"))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert groups == [12]  # one statement for every finish handed in during one loop turn
    assert results[:11] == [None] * 11
    assert isinstance(results[11], LeaseLost)  # only the stale one
    assert results[11].token == stale.token
    now = await backend.now()
    for i, lease in enumerate(leases):
        stored = await backend.get(lease.job_id)
        assert stored is not None
        if i == 3:
            assert stored.status is State.RUNNING  # the stale token moved nothing
            continue
        assert stored.status is State.SUCCEEDED
        assert stored.result == {"n": i}
        assert stored.finished_at == now
        history = await backend.history(lease.job_id)
        assert [(t.from_status, t.to_status, t.token) for t in history][-1] == (
            State.RUNNING,
            State.SUCCEEDED,
            1,
        )


async def test_a_lone_finish_checks_its_lease(backend: PostgresBackend) -> None:
    await backend.submit([job(1)])
    (claimed,) = await backend.claim("w1", {"default": 1}, 1, LEASE)
    with pytest.raises(LeaseLost):
        await backend.complete(Lease(claimed.id, claimed.token + 1), "stale")
    await backend.mark_cancelled(Lease(claimed.id, claimed.token))
    assert (await backend.get(claimed.id)).status is State.CANCELLED  # type: ignore[union-attr]
    with pytest.raises(LeaseLost):
        await backend.complete(Lease(claimed.id, claimed.token), "again")


async def test_a_gathering_group_flushes_what_one_loop_turn_handed_in() -> None:
    seen: list[list[int]] = []

    async def many(items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        await asyncio.sleep(0)
        return [i * 10 for i in items]

    async def one(item: int) -> int:
        seen.append([item])
        return item * 10

    group: Group[int, int] = Group(many, one, gather=True)
    assert await group(1) == 10  # alone, after one loop turn
    assert await asyncio.gather(*(group(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert seen == [[1], [0, 1, 2, 3, 4]]
    pending = asyncio.ensure_future(group(7))
    await asyncio.sleep(0)  # its caller has handed it in; the flush starts a turn later
    await group.drain()
    assert pending.done()
    assert await pending == 70
