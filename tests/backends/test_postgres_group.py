"""Group commit on PostgreSQL: concurrent submits and moves to a final state of one process
share transactions, and each caller still gets its own records and its own errors.

``group_flushes=1``: the first call of a gather flushes alone and every later one waits
behind it, so the rest are written as one group (the tests check that a group was formed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from offload.backends.postgres import PostgresBackend
from offload.backends.postgres.group import Group
from offload.core.clock import ManualClock
from offload.core.job import JobRecord, Lease, NewJob
from offload.core.states import State
from offload.errors import BackendError, BackendUnavailable, IdempotencyConflict, LeaseLost
from pgkit import postgres_schema_url

LEASE = 30.0


def job(n: int, **fields: object) -> NewJob:
    return NewJob(id=f"{n:032x}", task="tasks.echo", args=[n], kwargs={}, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def backend() -> AsyncIterator[PostgresBackend]:
    url = postgres_schema_url() + "&group_flushes=1"
    store = PostgresBackend.from_url(url, clock=ManualClock())
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def count_groups(backend: PostgresBackend, name: str) -> list[int]:
    """Record the size of every group ``name`` ('_submits' or '_finishes') writes together."""
    group = getattr(backend, name)
    sizes: list[int] = []
    many = group._many

    async def counted(items: list[object]) -> object:
        sizes.append(len(items))
        return await many(items)

    group._many = counted
    return sizes


async def outcomes(calls: list[object]) -> list[object]:
    return await asyncio.gather(*calls, return_exceptions=True)  # type: ignore[arg-type]


async def test_concurrent_submits_share_a_transaction_and_keep_their_records(
    backend: PostgresBackend,
) -> None:
    sizes = count_groups(backend, "_submits")
    calls = [backend.submit([job(n)]) for n in range(20)]
    calls.append(backend.submit([job(100), job(101), job(102)]))
    results = await outcomes(calls)  # type: ignore[arg-type]
    assert max(sizes) > 1
    for n, result in enumerate(results[:20]):
        assert isinstance(result, list)
        assert [r.id for r in result] == [job(n).id]
        assert result[0].args == [n]
    assert [r.id for r in results[20]] == [job(100).id, job(101).id, job(102).id]  # type: ignore[union-attr]
    for n in [*range(20), 100, 101, 102]:
        stored = await backend.get(job(n).id)
        assert stored is not None
        assert stored.status is State.QUEUED
        assert [t.reason.value for t in await backend.history(job(n).id)] == ["submitted"]


async def test_a_bad_submit_in_a_group_fails_only_its_own_caller(
    backend: PostgresBackend,
) -> None:
    await backend.submit([job(7)])  # its id taken: submitting it again breaks the insert
    sizes = count_groups(backend, "_submits")
    calls = [backend.submit([job(n)]) for n in range(10, 20)]
    calls.insert(3, backend.submit([job(7)]))  # the database refuses it (duplicate id)
    calls.insert(6, backend.submit([job(8, delay=float("nan"))]))  # refused before any write
    calls.insert(8, backend.submit([job(30), job(7)]))  # one bad job spoils its whole submit
    calls.insert(10, backend.submit([NewJob(job(31).id, "tasks.echo", [object()], {})]))
    results = await outcomes(calls)  # type: ignore[arg-type]
    assert max(sizes) > 1
    assert isinstance(results[3], BackendError)
    assert isinstance(results[6], ValueError)
    assert isinstance(results[8], BackendError)
    assert isinstance(results[10], TypeError)  # its arguments cannot be encoded
    good = [r for i, r in enumerate(results) if i not in (3, 6, 8, 10)]
    assert [r[0].id for r in good] == [job(n).id for n in range(10, 20)]  # type: ignore[index]
    for n in range(10, 20):
        assert await backend.get(job(n).id) is not None
    assert await backend.get(job(8).id) is None
    assert await backend.get(job(30).id) is None  # all or none for one caller's submit
    assert await backend.get(job(31).id) is None


async def test_idempotency_keys_inside_one_group(backend: PostgresBackend) -> None:
    sizes = count_groups(backend, "_submits")
    results = await outcomes(
        [
            backend.submit([job(1)]),
            backend.submit([job(2, idempotency_key="k", fingerprint="a")]),
            backend.submit([job(3, idempotency_key="k", fingerprint="a")]),  # the same request
            backend.submit([job(4, idempotency_key="k", fingerprint="b")]),  # the key reused
            backend.submit([job(5)]),
        ]
    )
    assert max(sizes) > 1
    assert [r[0].id for r in results[:3]] == [job(1).id, job(2).id, job(2).id]  # type: ignore[index]
    assert isinstance(results[3], IdempotencyConflict)
    assert results[4][0].id == job(5).id  # type: ignore[index]
    assert await backend.get(job(3).id) is None
    assert await backend.get(job(4).id) is None


async def claimed(backend: PostgresBackend, n: int) -> list[JobRecord]:
    await backend.submit([job(i) for i in range(n)])
    return await backend.claim("w1", {"default": n}, n, LEASE)


async def test_finishes_in_one_group_with_a_stale_token(backend: PostgresBackend) -> None:
    jobs = await claimed(backend, 8)
    assert len(jobs) == 8
    sizes = count_groups(backend, "_finishes")
    leases = [Lease(j.id, j.token) for j in jobs]
    stale = Lease(leases[2].job_id, leases[2].token + 1)
    results = await outcomes(
        [
            backend.complete(leases[0], "zero"),
            backend.complete(leases[1], {"one": 1}),
            backend.complete(stale, "never"),
            backend.fail(leases[3], {"type": "E", "message": "boom"}),
            backend.mark_cancelled(leases[4], {"type": "Cancelled", "message": "asked"}),
            backend.complete(leases[5], None),
            backend.complete(leases[5], "twice"),  # one lease finished twice: once only
            backend.mark_cancelled(leases[6]),
        ]
    )
    assert max(sizes) > 1
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "NoneType",
        "LeaseLost",
        "NoneType",
        "NoneType",
        "NoneType",
        "LeaseLost",
        "NoneType",
    ]
    assert isinstance(results[2], LeaseLost)
    assert results[2].token == stale.token
    states = [(await backend.get(lease.job_id)) for lease in leases]
    assert [s.status for s in states if s] == [
        State.SUCCEEDED,
        State.SUCCEEDED,
        State.RUNNING,  # the stale token moved nothing
        State.FAILED,
        State.CANCELLED,
        State.SUCCEEDED,
        State.CANCELLED,
        State.RUNNING,
    ]
    assert states[0]
    assert states[0].result == "zero"
    assert states[1]
    assert states[1].result == {"one": 1}
    assert states[3]
    assert states[3].error == {"type": "E", "message": "boom"}
    assert states[5]
    assert states[5].result is None
    history = await backend.history(leases[3].job_id)
    assert [(t.from_status, t.to_status, t.detail) for t in history][-1] == (
        State.RUNNING,
        State.FAILED,
        "boom",
    )
    assert len(await backend.history(leases[5].job_id)) == 3  # submitted, claimed, succeeded
    await backend.complete(leases[2], "now")  # its own lease still holds
    assert (await backend.get(leases[2].job_id)).result == "now"  # type: ignore[union-attr]


# -- the group itself, without a database -----------------------------------------------------
async def test_a_lone_call_is_written_at_once_by_itself() -> None:
    seen: list[list[int]] = []

    async def many(items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        return [i * 10 for i in items]

    async def one(item: int) -> int:
        seen.append([item])
        return item * 10

    group: Group[int, int] = Group(many, one)
    assert await group(1) == 10
    assert await group(2) == 20
    assert seen == [[1], [2]]
    assert await asyncio.gather(*(group(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert seen[2:] == [[0], [1, 2, 3, 4]]


async def test_an_unknown_outcome_goes_to_every_caller_and_a_refusal_item_by_item() -> None:
    def failing(exc: Exception) -> Group[int, int]:
        async def many(items: list[int]) -> list[int | BaseException]:
            raise exc

        async def one(item: int) -> int:
            if item == 3:
                raise ValueError("three")
            return item

        return Group(many, one)

    down = failing(BackendUnavailable("gone"))
    results = await asyncio.gather(*(down(i) for i in range(5)), return_exceptions=True)
    assert results[0] == 0  # alone: written by ``one``
    assert all(isinstance(r, BackendUnavailable) for r in results[1:])
    refused = failing(BackendError("refused"))
    results = await asyncio.gather(*(refused(i) for i in range(5)), return_exceptions=True)
    assert results[:3] == [0, 1, 2]
    assert isinstance(results[3], ValueError)
    assert results[4] == 4


async def test_a_caller_cancelled_while_it_waits_is_left_out() -> None:
    seen: list[list[int]] = []
    gate = asyncio.Event()

    async def many(items: list[int]) -> list[int | BaseException]:
        seen.append(items)
        return list(items)

    async def one(item: int) -> int:
        seen.append([item])
        await gate.wait()
        return item

    group: Group[int, int] = Group(many, one)
    first = asyncio.ensure_future(group(1))
    waiting = [asyncio.ensure_future(group(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    waiting[1].cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await first == 1
    assert await waiting[0] == 2
    assert await waiting[2] == 4
    await group.drain()
    assert seen == [[1], [2, 4]]


async def test_after_runs_before_a_lone_answer_and_after_a_group_answer() -> None:
    events: list[str] = []

    async def many(items: list[int]) -> list[int | BaseException]:
        return list(items)

    async def one(item: int) -> int:
        return item

    async def after() -> None:
        await asyncio.sleep(0)  # its first I/O: the callers it does not hold back run now
        events.append("after")

    group: Group[int, int] = Group(many, one, after=after)

    async def call(item: int) -> None:
        await group(item)
        events.append(f"answered {item}")

    await call(1)
    assert events == ["after", "answered 1"]
    events.clear()
    await asyncio.gather(call(1), call(2), call(3))
    await group.drain()
    assert events == ["after", "answered 1", "answered 2", "answered 3", "after"]
