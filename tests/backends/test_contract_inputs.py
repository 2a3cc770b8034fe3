"""Backend contract, bad input: a job or an outcome whose numbers cannot be stored is refused
for its own caller before anything is written, and never half-applies a batch (issue 23).

Runs unchanged against every backend kind in conftest, like contract/.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.job import JobFilter, Lease
from offload.core.limits import Limits
from offload.core.states import State
from offload.errors import SerializationError

from .contract.helpers import (
    ALL,
    LEASE,
    MakeJob,
    claim_one,
    nothing_claimable,
    stored,
    submit_one,
)

BAD_FIELDS: list[dict[str, Any]] = [
    {"delay": math.nan},
    {"delay": math.inf},
    {"run_at": math.nan},
    {"run_at": math.inf},
    {"result_ttl": math.nan},
    {"result_ttl": math.inf},
    {"priority": 2**53 + 1},
    {"priority": -(2**31) - 1},
    {"limits": Limits(rate=math.nan)},
    {"limits": Limits(key_rate=math.inf)},
    {"meta": {"a": math.nan}},  # was stored as null by every backend
    {"meta": {"a": [math.inf]}},
]


@pytest.mark.parametrize(
    "bad", BAD_FIELDS, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items())
)
async def test_a_job_with_a_number_that_cannot_be_stored_is_refused_with_its_batch(
    backend: Backend, make: MakeJob, bad: dict[str, Any]
) -> None:
    good, wrong = make(), make(**bad)
    with pytest.raises(ValueError, match=wrong.id):
        await backend.submit([good, wrong])
    assert await backend.get(good.id) is None
    assert await backend.get(wrong.id) is None
    assert await nothing_claimable(backend)


async def test_a_bad_submit_fails_only_its_own_caller(backend: Backend, make: MakeJob) -> None:
    goods = [make() for _ in range(3)]
    calls = [
        backend.submit([goods[0]]),
        backend.submit([make(run_at=math.nan)]),
        backend.submit([make(meta={"tags": {1, 2}})]),
        backend.submit([goods[1], goods[2]]),
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[1], ValueError)
    assert isinstance(results[2], ValueError | SerializationError | TypeError)
    for job in goods:
        assert (await stored(backend, job.id)).status is State.QUEUED
    claimed = await backend.claim("w1", ALL, 10, LEASE)
    assert sorted(j.id for j in claimed) == sorted(j.id for j in goods)


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1.0])
async def test_a_retry_delay_that_is_not_finite_is_refused_and_the_lease_kept(
    backend: Backend, make: MakeJob, delay: float
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    with pytest.raises(ValueError, match="retry"):
        await backend.fail(lease, {"message": "again"}, retry_in=delay)
    assert (await stored(backend, record.id)).status is State.RUNNING
    await backend.complete(lease, "done")
    assert (await stored(backend, record.id)).status is State.SUCCEEDED


async def test_a_refused_retry_leaves_a_concurrent_completion_whole(
    backend: Backend, make: MakeJob
) -> None:
    await backend.submit([make(result_ttl=60.0), make()])
    claimed = await backend.claim("w1", ALL, 2, LEASE)
    first, second = (Lease(j.id, j.token) for j in claimed)
    done, refused = await asyncio.gather(
        backend.complete(first, "ok"),
        backend.fail(second, {"message": "x"}, retry_in=math.nan),
        return_exceptions=True,
    )
    assert done is None
    assert isinstance(refused, ValueError)
    assert (await stored(backend, first.job_id)).status is State.SUCCEEDED
    [stats] = [s for s in await backend.stats() if s.queue == "default"]
    assert stats.count(State.RUNNING) == 1


@pytest.mark.parametrize("key", ["a\0b", "a\0", "\0", "k\0task\0x"])
async def test_a_concurrency_key_with_nul_holds_its_cap_and_stalls_nothing(
    backend: Backend, make: MakeJob, key: str
) -> None:
    capped = Limits(key_concurrency=1)
    first, second = (
        make(concurrency_key=key, limits=capped),
        make(concurrency_key=key, limits=capped),
    )
    plain = make()
    await backend.submit([first, second, plain])
    claimed = {j.id: j for j in await backend.claim("w1", ALL, 10, LEASE)}
    assert sorted(claimed) == sorted([first.id, plain.id])
    await backend.complete(Lease(first.id, claimed[first.id].token), None)
    [again] = await backend.claim("w1", ALL, 10, LEASE)
    assert again.id == second.id


async def test_a_thousand_jobs_waiting_for_one_key_hide_no_other_key(
    backend: Backend, make: MakeJob
) -> None:
    capped = Limits(key_concurrency=1)
    flood = [make(concurrency_key="A", limits=capped) for _ in range(1000)]
    other = make(concurrency_key="B", limits=capped)
    await backend.submit(flood)
    await backend.submit([other])
    [first] = await backend.claim("w1", ALL, 1, LEASE)
    assert first.id == flood[0].id
    assert [j.id for j in await backend.claim("w1", ALL, 1, LEASE)] == [other.id]
    assert await backend.claim("w1", ALL, 10, LEASE) == []  # A's slot is still taken
    await backend.cancel(flood[1].id)  # a waiting job leaves: the rest still get their turn
    await backend.complete(Lease(first.id, first.token), None)
    [second] = await backend.claim("w1", ALL, 10, LEASE)
    assert second.id == flood[2].id
    await backend.cancel(flood[3].id)
    await backend.complete(Lease(second.id, second.token), None)
    [third] = await backend.claim("w1", ALL, 10, LEASE)
    assert third.id == flood[4].id
    await backend.complete(Lease(third.id, third.token), None)
    await backend.cancel(flood[5].id)  # the next in line leaves before any claim
    assert [j.id for j in await backend.claim("w1", ALL, 10, LEASE)] == [flood[6].id]


async def test_wait_for_work_returns_at_once_for_a_capped_job_with_a_free_slot(
    backend: Backend, make: MakeJob
) -> None:
    await submit_one(backend, make(concurrency_key="k", limits=Limits(key_concurrency=1)))
    await asyncio.wait_for(backend.wait_for_work(["default"], timeout=60.0), timeout=10.0)
    assert len(await backend.claim("w1", ALL, 10, LEASE)) == 1


@pytest.mark.parametrize("fingerprint", ["same", "other"])
async def test_after_prune_a_key_protects_nothing_and_makes_a_new_job(
    backend: Backend, clock: ManualClock, make: MakeJob, fingerprint: str
) -> None:
    first = make(idempotency_key="k", fingerprint="same", result_ttl=10.0)
    await submit_one(backend, first)
    _, lease = await claim_one(backend)
    await backend.complete(lease, "done")
    clock.advance(11.0)
    assert await backend.prune() == 1
    again = make(idempotency_key="k", fingerprint=fingerprint)
    record = await submit_one(backend, again)  # within the 24 h window: no conflict
    assert record.id == again.id
    assert record.status is State.QUEUED
    assert (
        await submit_one(backend, make(idempotency_key="k", fingerprint=fingerprint))
    ).id == again.id


@pytest.mark.parametrize("limit", [0, -5, 10**20, True, 2.5])
async def test_a_page_size_out_of_range_is_refused_on_every_backend(
    backend: Backend, make: MakeJob, limit: Any
) -> None:
    # SQLite read -5 as no limit (every job), Redis failed with IndexError, and 10**20
    # overflowed SQLite's integers: one answer everywhere, before the backend is asked.
    await submit_one(backend, make())
    with pytest.raises(ValueError, match="limit"):
        await backend.list_jobs(JobFilter(limit=limit))
