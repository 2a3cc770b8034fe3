"""A Redis job that ended is one compact record in the bucket of its creation time: its history
folded in, no key or index entry of its own left behind."""

from __future__ import annotations

import math

import pytest
import redis

from offload.backends.redis import RedisBackend, reads
from offload.core.clock import ManualClock
from offload.core.ids import new_job_id
from offload.core.job import JobFilter, Lease, NewJob
from offload.core.retention import Retention, RetentionPolicy
from offload.core.states import Reason, State
from offload.errors import InvalidTransition
from rediskit import redis_namespace_url


def job(n: int) -> NewJob:
    return NewJob(id=f"{n:032x}", task="tasks.echo", args=[n], kwargs={}, result_ttl=60.0)


@pytest.fixture
def store(redis_store: RedisBackend) -> RedisBackend:
    return redis_store


async def test_an_ended_job_keeps_its_history_in_its_hash(
    store: RedisBackend, clock: ManualClock, sync_redis: redis.Redis
) -> None:
    [a] = await store.submit([job(1)])
    [first] = await store.claim("worker-one", {"default": 1}, 1, 10.0)
    clock.advance(1.0)
    await store.fail(Lease(a.id, first.token), {"type": "E", "message": "once"}, retry_in=0.0)
    clock.advance(1.0)
    [second] = await store.claim("worker-two", {"default": 1}, 1, 10.0)
    clock.advance(2.0)
    running = await store.history(a.id)
    await store.fail(Lease(a.id, second.token), {"type": "E", "message": "boom"})

    history = await store.history(a.id)
    record = await store.get(a.id)
    assert record is not None
    assert record.status is State.FAILED
    assert history[: len(running)] == running
    last = history[-1]
    assert (last.at, last.from_status, last.to_status, last.reason) == (
        clock.now(),
        State.RUNNING,
        State.FAILED,
        Reason.FAILED,
    )
    assert (last.worker_id, last.token) == ("worker-two", second.token)
    assert [e.worker_id for e in history] == [
        None,
        "worker-one",
        "worker-one",
        "worker-two",
        "worker-two",
    ]
    assert record.updated_at == record.finished_at == clock.now()
    assert record.run_at == history[2].at  # requeued for its retry: kept as it was
    assert (history[2].reason, history[2].detail) == (Reason.RETRY, "once")
    assert first.token < second.token
    assert not sync_redis.exists(f"{store.root}h:{a.id}")


async def test_a_job_cancelled_before_it_ran_reads_back_whole(
    store: RedisBackend, clock: ManualClock, sync_redis: redis.Redis
) -> None:
    [a] = await store.submit([job(2)])
    clock.advance(3.0)
    cancelled = await store.cancel(a.id)
    record = await store.get(a.id)
    assert record == cancelled
    assert record is not None
    assert record.run_at == record.created_at
    assert record.updated_at == record.finished_at == clock.now()
    history = await store.history(a.id)
    assert [(e.from_status, e.to_status, e.reason, e.worker_id) for e in history] == [
        (None, State.QUEUED, Reason.SUBMITTED, None),
        (State.QUEUED, State.CANCELLED, Reason.CANCELLED, None),
    ]
    assert history[1].at == clock.now()
    assert not sync_redis.exists(f"{store.root}h:{a.id}")


def own_keys(sync_redis: redis.Redis, store: RedisBackend, job_id: str) -> list[str]:
    """The keys and index memberships a job holds on its own."""
    root = store.root
    keys = [k for k in (f"{root}j:{job_id}", f"{root}h:{job_id}") if sync_redis.exists(k)]
    for index in sync_redis.keys(root.replace("{", "[{]") + "i:*"):
        if sync_redis.zscore(index, job_id) is not None:
            keys.append(index)
    return keys


async def test_a_finished_job_is_one_bucket_field_and_refuses_a_late_completion(
    store: RedisBackend, sync_redis: redis.Redis
) -> None:
    [a] = await store.submit([job(3)])
    [claimed] = await store.claim("w", {"default": 1}, 1, 10.0)
    lease = Lease(a.id, claimed.token)
    await store.complete(lease, 1)
    before = await store.history(a.id)
    with pytest.raises(Exception, match="lease"):
        await store.complete(lease, 2)
    assert await store.history(a.id) == before
    record = await store.get(a.id)
    assert record is not None
    assert record.result == 1
    assert own_keys(sync_redis, store, a.id) == []
    bucket = f"{store.root}f:{math.floor(record.created_at)}"
    assert sync_redis.hexists(bucket, a.id)
    # this id's time is not its creation time (a manual clock): a pointer finds the bucket
    assert sync_redis.hget(f"{store.root}fp", a.id) == bucket.rsplit(":", 1)[1]


async def test_a_job_whose_id_tells_its_bucket_needs_no_pointer(
    store: RedisBackend, clock: ManualClock, sync_redis: redis.Redis
) -> None:
    new = NewJob(id=new_job_id(clock.now()), task="t", args=[], kwargs={}, result_ttl=5.0)
    [a] = await store.submit([new])
    [claimed] = await store.claim("w", {"default": 1}, 1, 10.0)
    await store.fail(Lease(a.id, claimed.token), {"type": "E", "message": "no"})
    assert not sync_redis.hexists(f"{store.root}fp", a.id)
    record = await store.get(a.id)
    assert record is not None
    assert record.status is State.FAILED
    assert [e.reason for e in await store.history(a.id)] == [
        Reason.SUBMITTED,
        Reason.CLAIMED,
        Reason.FAILED,
    ]
    with pytest.raises(InvalidTransition):
        await store.cancel(a.id)
    [again] = await store.submit([new])  # a resubmitted id: the job as stored
    assert again == record
    clock.advance(5.0)
    assert await store.prune() == 1
    assert await store.get(a.id) is None
    assert sync_redis.keys(store.root.replace("{", "[{]") + "f*") == []


async def test_a_long_history_folds_in_pieces(
    store: RedisBackend, clock: ManualClock, sync_redis: redis.Redis
) -> None:
    # Thousands of entries (a rate-limited job can bounce that often) are more than one
    # HSET's unpack takes: the fold writes them in pieces.
    [a] = await store.submit([job(4)])
    [claimed] = await store.claim("w", {"default": 1}, 1, 10.0)
    at = repr(clock.now() - 1.0)
    bounce = f'["{at}","queued","scheduled","rate_limited",0,0,false,false]'
    sync_redis.lpush(f"{store.root}h:{a.id}", *[bounce] * 5000)
    await store.complete(Lease(a.id, claimed.token), None)
    history = await store.history(a.id)
    assert len(history) == 5003
    assert {(e.reason, e.at) for e in history[1:5001]} == {(Reason.RATE_LIMITED, float(at))}
    assert [e.reason for e in history[5001:]] == [Reason.CLAIMED, Reason.SUCCEEDED]
    assert not sync_redis.exists(f"{store.root}h:{a.id}")


async def test_pages_across_buckets_visit_every_ended_job_once_within_a_small_budget(
    store: RedisBackend, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "LIST_SCAN_BUDGET", 7)
    for second in range(6):  # six buckets; several jobs share each creation time
        records = await store.submit([job(100 * second + n) for n in range(5)])
        clock.advance(0.5 if second % 2 else 1.0)
        for _ in records:
            [c] = await store.claim("w", {"default": 1}, 1, 10.0)
            if c.args[0] % 3:
                await store.complete(Lease(c.id, c.token), None)
            else:
                await store.fail(Lease(c.id, c.token), {"type": "E", "message": "x"})
    await store.submit([job(999)])  # a live job among them
    everything = [await store.get(f"{n:032x}") for n in [*range(600), 999]]
    jobs = sorted((j for j in everything if j), key=lambda j: (j.created_at, j.id), reverse=True)
    for flt in (JobFilter(limit=4), JobFilter(limit=3, status=State.FAILED), JobFilter(limit=1)):
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.list_jobs(
                JobFilter(status=flt.status, limit=flt.limit, cursor=cursor)
            )
            assert len(page.jobs) <= flt.limit
            seen += [j.id for j in page.jobs]
            if (cursor := page.next_cursor) is None:
                break
        assert seen == [j.id for j in jobs if flt.status in (None, j.status)]


async def test_jobs_that_ended_before_buckets_are_read_listed_and_pruned(
    store: RedisBackend, clock: ManualClock, sync_redis: redis.Redis
) -> None:
    # What an older offload left for an ended job: its hash with the history folded in, its
    # listing index entries, and its place in 'expire' (a result_ttl) or 'fin:<status>'.
    root, now = store.root, clock.now()
    old = {"ttl": f"{1:032x}", "aged": f"{2:032x}"}
    for name, job_id in old.items():
        sync_redis.hset(
            f"{root}j:{job_id}",
            mapping={
                "id": job_id,
                "task": "t",
                "queue": "default",
                "status": "succeeded",
                "submitted_as": "queued",
                "attempts": "1",
                "token": "1",
                "created_at": repr(now - 10),
                "started_at": repr(now - 9),
                "finished_at": repr(now - 8),
                "worker_id": "w",
                "tenant": "default",
                "args": "[]",
                "kwargs": "{}",
                "meta": "{}",
                "result": "7",
                "h1": '[1,"queued","running","claimed",1,1,1]',
                "h2": '[2,"running","succeeded",0,1,1,1]',
                **({"result_ttl": "5"} if name == "ttl" else {}),
            },
        )
        for index in ("i:all", "i:st:succeeded", "i:q:default", "i:tk:t", "i:tn:default"):
            sync_redis.zadd(f"{root}{index}", {job_id: now - 10})
    sync_redis.zadd(f"{root}expire", {old["ttl"]: now - 3})
    sync_redis.zadd(f"{root}fin:succeeded", {old["aged"]: now - 8})
    sync_redis.hset(f"{root}counts", "default\0succeeded", 2)
    [new] = await store.submit([job(3)])
    [c] = await store.claim("w", {"default": 1}, 1, 10.0)
    await store.complete(Lease(c.id, c.token), 7)

    listed = await store.list_jobs(JobFilter(status=State.SUCCEEDED))
    assert [j.id for j in listed.jobs] == [new.id, old["aged"], old["ttl"]]
    record = await store.get(old["ttl"])
    assert record is not None
    assert (record.result, record.worker_id) == (7, "w")
    history = await store.history(old["ttl"])
    assert [(e.reason, e.at) for e in history] == [
        (Reason.SUBMITTED, now - 10),
        (Reason.CLAIMED, now - 9),
        (Reason.SUCCEEDED, now - 8),
    ]
    assert await store.prune() == 1  # its result_ttl ran out
    policy = RetentionPolicy(Retention(succeeded=1.0), max_finished=None)
    assert await store.prune(policy=policy) == 1
    assert [j.id for j in (await store.list_jobs(JobFilter())).jobs] == [new.id]
    assert sync_redis.keys(root.replace("{", "[{]") + "[jh]:*") == []
    assert sync_redis.hget(f"{root}counts", "default\0succeeded") == "1"


async def test_the_count_cap_takes_the_oldest_of_a_bucket_ties_by_id(
    store: RedisBackend, clock: ManualClock
) -> None:
    ids = [r.id for r in await store.submit([job(n) for n in (5, 3, 9, 1, 7, 2)])]
    clock.advance(0.25)
    [other] = await store.submit([job(8)])  # same bucket, created later
    for _ in range(7):
        [c] = await store.claim("w", {"default": 1}, 1, 10.0)
        await store.complete(Lease(c.id, c.token), None)
    policy = RetentionPolicy(Retention(None, None, None), max_finished=3)
    assert await store.prune(limit=2, policy=policy) == 2
    left = {j.id for j in (await store.list_jobs(JobFilter())).jobs}
    assert left == {*ids, other.id} - {f"{1:032x}", f"{2:032x}"}
    assert await store.prune(policy=policy) == 2
    left = {j.id for j in (await store.list_jobs(JobFilter())).jobs}
    assert left == {f"{7:032x}", f"{9:032x}", other.id}


async def test_the_count_caps_kept_order_gives_way_to_a_job_that_ends_later(
    store: RedisBackend, sync_redis: redis.Redis
) -> None:
    await store.submit([job(n) for n in (4, 0, 5, 6, 7)])  # one bucket, one creation time
    claimed = await store.claim("w", {"default": 5}, 5, 10.0)
    late = next(c for c in claimed if c.id == f"{0:032x}")
    for c in claimed:
        if c is not late:
            await store.complete(Lease(c.id, c.token), None)
    policy = RetentionPolicy(Retention(None, None, None), max_finished=2)
    assert await store.prune(limit=1, policy=policy) == 1  # job 4; 5, 6, 7 kept in order
    assert sync_redis.keys(store.root.replace("{", "[{]") + "fo:*")
    await store.complete(Lease(late.id, late.token), None)  # the oldest by id now ended
    assert await store.prune(limit=1, policy=policy) == 1
    assert await store.get(late.id) is None
    assert await store.prune(policy=policy) == 1
    left = {j.id for j in (await store.list_jobs(JobFilter())).jobs}
    assert left == {f"{6:032x}", f"{7:032x}"}


async def test_an_ended_jobs_record_is_the_one_the_hash_writing_finish_gave(
    sync_redis: redis.Redis,
) -> None:
    # FINISH hands an ending job's last fields to retire() instead of writing them to the hash
    # it deletes: the records must stay what main at 66973dd wrote (which wrote the hash),
    # byte for byte, so that old and new records read alike.
    clock = ManualClock(1765137600.123456)
    backend = RedisBackend(redis_namespace_url(), clock=clock)
    await backend.open()
    try:
        ids = ["0193abcdef0100000000000000000001", "0193abcdef0100000000000000000002"]
        for job_id in ids:
            await backend.submit([NewJob(id=job_id, task="t", args=[1], kwargs={"a": 2})])
        clock.advance(0.5)
        a, b = sorted(await backend.claim("w1", {"default": 5}, 5, 30.0), key=lambda j: j.id)
        clock.advance(0.25)
        await backend.complete(Lease(a.id, a.token), {"x": 1})
        await backend.fail(Lease(b.id, b.token), {"message": "boom", "type": "E"})
        records = sync_redis.hgetall(backend.root + "f:1765137600")
    finally:
        await backend.close()
    head = '["1765137600.123456",0,'
    tail = '0,"t",0,"1765137600.623456","1765137600.873456",0,0,"w1",0,"[1]","{\\"a\\":2}",0,'
    assert records == {
        ids[0]: head + '"succeeded",[[1,"queued","running","claimed",1,1,1],'
        '[2,"running","succeeded",0,1,1,1]],' + tail + '"{\\"x\\":1}"]',
        ids[1]: head + '"failed",[[1,"queued","running","claimed",1,1,1],'
        '[2,"running","failed",0,1,1,1,"boom"]],'
        + tail
        + '0,"{\\"message\\":\\"boom\\",\\"type\\":\\"E\\"}"]',
    }
