"""Listing ended Redis jobs: a full bucket's second goes on in slices, and pages follow
cursors across seconds, slices and their shared bucket, many jobs sharing one creation time."""

from __future__ import annotations

import asyncio

import pytest
import redis

from offload.backends.redis import RedisBackend, ended, reads
from offload.backends.redis.scripts import BUCKET_FULL, BUCKET_SLICES
from offload.core.clock import ManualClock
from offload.core.job import JobFilter, JobRecord, Lease, NewJob
from offload.core.states import State


@pytest.fixture
def store(redis_store: RedisBackend) -> RedisBackend:
    return redis_store


def time_id(at: float, n: int) -> str:
    """An id whose time (its first 12 hex digits, ms) is ``at``, as new_job_id makes them."""
    return f"{int(at * 1000):012x}{n:020x}"


async def submit_and_end(store: RedisBackend, clock: ManualClock, batches: list[int]) -> None:
    """Submit batches of jobs (one creation time each, the clock moving 1/40 s after each),
    then end them all: every 7th fails, task 'rare' every 11th."""
    n = 0
    for size in batches:
        jobs = []
        for _ in range(size):
            task = "rare" if n % 11 == 0 else "common"
            jobs.append(NewJob(id=time_id(clock.now(), n), task=task, args=[n], kwargs={}))
            n += 1
        await store.submit(jobs)
        clock.advance(1 / 40)
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


async def test_a_full_second_goes_on_in_slices_and_pages_visit_every_job_once_in_order(
    store: RedisBackend,
    clock: ManualClock,
    sync_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Three seconds of 40 batches of 10 (400 jobs a second, BUCKET_FULL of them in the
    # second's own bucket, the rest in slices), then a quieter second (one bucket).
    assert BUCKET_FULL < 400
    await submit_and_end(store, clock, [10] * 120 + [3] * 40)
    names = sync_redis.zrange(f"{store.root}fb", 0, -1)
    slices = [n for n in names if "." in n]
    assert len(slices) >= 3 * 10  # each second's last 14 batches, in slices
    assert len(names) - len(slices) == 4
    for name in set(names) - set(slices):
        assert sync_redis.hlen(f"{store.root}f:{name}") <= BUCKET_FULL
    # an id whose time is its creation time needs no pointer, in a slice too
    assert sync_redis.hlen(f"{store.root}fp") == 0
    ids = [i for n in names for i in sync_redis.hkeys(f"{store.root}f:{n}")]
    assert len(ids) == 120 * 10 + 40 * 3
    everything = [j for j in [await store.get(i) for i in ids] if j is not None]
    assert len(everything) == len(ids)
    jobs = newest_first(everything)
    # small budgets: pages end at frontiers inside seconds and slices, some short or empty;
    # with the larger one a page takes several script calls
    monkeypatch.setattr(ended, "SCRIPT_BUDGET", 40)
    for budget in (90, 2000):
        monkeypatch.setattr(reads, "LIST_SCAN_BUDGET", budget)
        for flt in (
            JobFilter(limit=50),
            JobFilter(limit=7),
            JobFilter(limit=10, status=State.FAILED),
            JobFilter(limit=25, task="rare"),
        ):
            expected = [
                j.id for j in jobs if flt.status in (None, j.status) and flt.task in (None, j.task)
            ]
            assert await every_page(store, flt) == expected


async def test_pages_over_many_jobs_created_at_one_time(
    store: RedisBackend, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 700 jobs of one creation time (a bulk submit), between two smaller batches
    await submit_and_end(store, clock, [5, 700, 5])
    first = await store.list_jobs(JobFilter(limit=1000))
    assert first.next_cursor is None
    jobs = newest_first(list(first.jobs))
    assert [j.id for j in first.jobs] == [j.id for j in jobs]
    assert len(jobs) == 710
    assert len({j.created_at for j in jobs}) == 3
    for budget in (5000, 100):
        monkeypatch.setattr(ended, "SCRIPT_BUDGET", budget)
        for limit in (50, 333):
            assert await every_page(store, JobFilter(limit=limit)) == [j.id for j in jobs]


def test_the_buckets_of_an_id_are_those_the_scripts_use() -> None:
    at = 1_700_000_000.0 + 63.5 / BUCKET_SLICES  # in the second's last slice
    assert ended.id_buckets(time_id(at, 1)) == [
        "1700000000",
        f"1700000000.{BUCKET_SLICES - 1}",
        "1700000001.0",
    ]
    assert ended.id_buckets("job-1") == []


async def test_a_bulk_resubmit_finds_ended_jobs_in_every_slice(
    store: RedisBackend, clock: ManualClock
) -> None:
    # 700 jobs of one second end in its bucket and in slices: a repeated bulk submit (e.g. a
    # retry after a broken connection) must find each one, not store it again
    await submit_and_end(store, clock, [700])
    done = (await store.list_jobs(JobFilter(limit=1000))).jobs
    assert len(done) == 700
    again = [NewJob(id=j.id, task=j.task, args=j.args, kwargs={}) for j in done]
    records = await store.submit(again)
    assert {r.id: r.status for r in records} == {j.id: j.status for j in done}
    assert not (await store.list_jobs(JobFilter(status=State.QUEUED, limit=10))).jobs
