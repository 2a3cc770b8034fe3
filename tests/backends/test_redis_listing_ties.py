"""Listing ended Redis jobs when many share one creation time: pages keep the order of
(created_at, id) newest first, ids in byte order (custom ids too), each LIST call returns at
most limit + 1 records, and jobs that end or are pruned between pages are neither skipped nor
repeated."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from offload.backends.redis import RedisBackend, ended, reads, scripts
from offload.core.clock import ManualClock
from offload.core.job import JobFilter, JobRecord, Lease, NewJob
from offload.core.states import State

from .test_redis_listing import time_id


@pytest.fixture
def store(redis_store: RedisBackend) -> RedisBackend:
    return redis_store


#: Custom ids whose byte order differs from a locale's collation (case, punctuation, digits,
#: non-ASCII): listing orders them as Python compares strings, whatever the server's locale.
CUSTOM = ("Job-{}", "job_{}", "JOB.{}", "job {}", "é{}", "Z{}", "a{:04d}", "~{}", "{}-x")


def new_job(job_id: str, n: int, **kw: Any) -> NewJob:
    return NewJob(id=job_id, task="rare" if n % 11 == 0 else "common", args=[n], kwargs={}, **kw)


async def end_all(store: RedisBackend) -> None:
    """Claim and end every ready job: every 7th (by its args) fails."""
    while claimed := await store.claim("w", {"default": 200}, 200, 60.0):
        await asyncio.gather(
            *(
                store.fail(Lease(c.id, c.token), {"type": "E", "message": "x"})
                if c.args[0] % 7 == 0
                else store.complete(Lease(c.id, c.token), None)
                for c in claimed
            )
        )


async def every_page(store: RedisBackend, flt: JobFilter) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_jobs(
            JobFilter(status=flt.status, task=flt.task, limit=flt.limit, cursor=cursor)
        )
        assert len(page.jobs) <= flt.limit
        seen += [j.id for j in page.jobs]
        if (cursor := page.next_cursor) is None:
            return seen


def newest_first(jobs: list[JobRecord]) -> list[JobRecord]:
    return sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)


async def submit_mixed(store: RedisBackend, clock: ManualClock) -> list[str]:
    """Small batches around two large ones of one creation time each (time ids, then custom
    ids), all ended; returns the ids."""
    ids: list[str] = []
    n = 0
    for size, custom in ((3, False), (450, False), (2, False), (270, True), (4, False)):
        jobs = []
        for k in range(size):
            job_id = CUSTOM[k % len(CUSTOM)].format(k) if custom else time_id(clock.now(), n)
            jobs.append(new_job(job_id, n))
            n += 1
        ids += [r.id for r in await store.submit(jobs)]
        clock.advance(1 / 3)
    await end_all(store)
    return ids


async def test_pages_over_ties_keep_the_brute_force_order_with_and_without_filters(
    store: RedisBackend, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await submit_mixed(store, clock)
    everything = [j for j in [await store.get(i) for i in ids] if j is not None]
    assert len(everything) == len(ids) == 729
    assert all(j.status in (State.SUCCEEDED, State.FAILED) for j in everything)
    jobs = newest_first(everything)
    for budget in (40, ended.SCRIPT_BUDGET):
        monkeypatch.setattr(ended, "SCRIPT_BUDGET", budget)
        for scan in (150, reads.LIST_SCAN_BUDGET):
            monkeypatch.setattr(reads, "LIST_SCAN_BUDGET", scan)
            for flt in (
                JobFilter(limit=50),
                JobFilter(limit=7),
                JobFilter(limit=201),
                JobFilter(limit=10, status=State.FAILED),
                JobFilter(limit=9, task="rare"),
                JobFilter(limit=30, status=State.SUCCEEDED, task="common"),
            ):
                expected = [
                    j.id
                    for j in jobs
                    if flt.status in (None, j.status) and flt.task in (None, j.task)
                ]
                assert await every_page(store, flt) == expected, (budget, scan, flt)
    assert await every_page(store, JobFilter(limit=1)) == [j.id for j in jobs]


async def test_ids_keep_their_byte_order_where_lua_compares_strings_by_locale(
    store: RedisBackend, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LIST compares ids with '<' only where the server's collation is byte order (C locales,
    # as here); elsewhere with its loop over bytes: forced here, the same pages come out
    ids = await submit_mixed(store, clock)
    jobs = newest_first([j for j in [await store.get(i) for i in ids] if j is not None])
    source = scripts.script("list")
    assert source.count("local bytewise = ") == 1
    source = source.replace("local bytewise = ", "local bytewise = false and ")

    async def script(name: str, args: Any, **kw: Any) -> Any:
        assert name == "list"
        return await store._run(lambda c: c.eval(source, 1, store.root, *args))

    monkeypatch.setattr(store, "_script", script)
    monkeypatch.setattr(ended, "SCRIPT_BUDGET", 60)
    for flt in (JobFilter(limit=50), JobFilter(limit=3), JobFilter(limit=20, task="rare")):
        expected = [j.id for j in jobs if flt.task in (None, j.task)]
        assert await every_page(store, flt) == expected


async def test_a_list_call_returns_at_most_limit_plus_one_records(
    store: RedisBackend, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.submit([new_job(time_id(clock.now(), n), n) for n in range(900)])
    await end_all(store)
    sizes: list[int] = []
    inner = store._script

    async def script(name: str, args: Any, **kw: Any) -> Any:
        reply = await inner(name, args, **kw)
        if name == "list":
            sizes.append((len(reply) - 3) // 2)
        return reply

    monkeypatch.setattr(store, "_script", script)
    for limit in (1, 50, 200):
        sizes.clear()
        seen = await every_page(store, JobFilter(limit=limit))
        assert len(seen) == len(set(seen)) == 900
        assert sizes
        assert max(sizes) <= limit + 1, (limit, max(sizes))


async def test_jobs_that_end_or_are_pruned_between_pages_are_listed_once_in_order(
    store: RedisBackend, clock: ManualClock
) -> None:
    # 600 jobs of one creation time, those of odd n with a short result_ttl; half end first
    await store.submit(
        [new_job(time_id(clock.now(), n), n, result_ttl=5.0 if n % 2 else None) for n in range(600)]
    )
    first = await store.claim("w", {"default": 300}, 300, 60.0)
    await asyncio.gather(*(store.complete(Lease(c.id, c.token), None) for c in first))
    clock.advance(1)
    seen: list[JobRecord] = []
    pruned: set[str] = set()
    cursor = None
    for turn in range(1000):
        page = await store.list_jobs(JobFilter(limit=40, cursor=cursor))
        seen += page.jobs
        if (cursor := page.next_cursor) is None:
            break
        # between pages: more jobs end (above and below the cursor), then some are pruned
        if claimed := await store.claim("w", {"default": 30}, 30, 60.0):
            await asyncio.gather(*(store.complete(Lease(c.id, c.token), None) for c in claimed))
        if turn % 3 == 2:
            before = {j.id for j in (await store.list_jobs(JobFilter(limit=1000))).jobs}
            clock.advance(10)
            assert await store.prune(limit=25) > 0
            after = {j.id for j in (await store.list_jobs(JobFilter(limit=1000))).jobs}
            pruned |= before - after
    keys = [(j.created_at, j.id) for j in seen]
    assert keys == sorted(set(keys), reverse=True)  # in order, none twice
    assert pruned
    listed = {j.id for j in seen}
    assert len(listed | pruned) == 600  # every job that was not pruned was listed
