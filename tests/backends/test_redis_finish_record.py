"""FINISH stores an ended job's record byte for byte as it always did, on both script paths
(issue 22 item 2: its Lua reads the job's hash once and builds less per call; the records,
history and indexes it writes must not change). The expected records were written by main
before that change (c934003's scripts)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis

from offload.backends.redis import RedisBackend
from offload.core.clock import ManualClock
from offload.core.job import Lease, NewJob
from offload.errors import LeaseLost
from rediskit import redis_namespace_url

pytestmark = pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])

#: A job with most of what a record folds in: meta with "/" and non-ASCII, a priority, a
#: tenant, an idempotency key and fingerprint, a concurrency key, a result_ttl; its id's time
#: (first 12 hex digits) is in another second than its creation (a pointer in fp).
JOB = NewJob(
    id="018bcfe56be800000000000000000001",
    task="tasks.echo",
    args=[1, "a/b", {"q": 'x"y'}],
    kwargs={"k": "é"},
    priority=3,
    tenant="t1",
    idempotency_key="ik",
    fingerprint="fp",
    concurrency_key="ck",
    meta={"m": "é/\\u"},
    result_ttl=60.0,
)
SUCCEEDED = (
    '["1700000000",0,"succeeded",[["1700000000.5","queued","running","claimed",1,1,'
    '"w-1"],["1700000000.75","running","queued","retry",1,1,"w-1","once"],[1,'
    '"queued","running","claimed",2,2,1],[2,"running","succeeded",0,2,2,1]],0,'
    '"tasks.echo","t1","1700000001.25","1700000001.625","2","2","w-2",0,"[1,\\"a\\/b\\",'
    '{\\"q\\":\\"x\\\\\\"y\\"}]","{\\"k\\":\\"é\\"}","{\\"m\\":\\"é\\/\\\\\\\\u\\"}",'
    '"{\\"r\\":[\\"a\\/b\\"]}",0,"60.0","1700000000.75",0,"3",0,"ik","ck","0.5","half"]'
)
FAILED = (
    '["1700000000",0,"failed",[[1,"queued","running","claimed",1,1,1],[2,"running",'
    '"failed",0,1,1,1,"boom"]],0,"tasks.echo",0,"1700000000.5","1700000001",0,0,'
    '"w-1",0,0,0,0,0,"{\\"message\\":\\"boom\\"}"]'
)


@pytest.fixture
async def store(functions: bool) -> AsyncIterator[tuple[RedisBackend, ManualClock, str]]:
    clock = ManualClock()
    url = redis_namespace_url()
    backend = RedisBackend(url, clock=clock, functions=functions)
    await backend.open()
    yield backend, clock, "{" + url.split("prefix=", 1)[1] + "}:"
    await backend.close()


async def test_a_completed_job_is_stored_as_before(
    store: tuple[RedisBackend, ManualClock, str], sync_redis: redis.Redis
) -> None:
    backend, clock, root = store
    await backend.submit([JOB])
    clock.advance(0.5)
    [first] = await backend.claim("w-1", {"default": 1}, 1, 10.0)
    clock.advance(0.25)
    await backend.fail(Lease(JOB.id, first.token), {"message": "once"}, retry_in=0.0)
    clock.advance(0.5)
    [second] = await backend.claim("w-2", {"default": 1}, 1, 10.0)
    clock.advance(0.125)
    await backend.progress(Lease(JOB.id, second.token), 0.5, "half")
    clock.advance(0.25)
    with pytest.raises(LeaseLost):  # the first lease is gone: nothing is written
        await backend.complete(Lease(JOB.id, first.token), "stale")
    await backend.complete(Lease(JOB.id, second.token), {"r": ["a/b"]})

    assert sync_redis.hget(root + "f:1700000000", JOB.id) == SUCCEEDED
    assert sync_redis.hget(root + "fp", JOB.id) == "1700000000"
    assert sync_redis.zrange(root + "fe", 0, -1, withscores=True) == [
        ("1700000000", 1700000061.625)
    ]
    assert not sync_redis.exists(root + "j:" + JOB.id, root + "h:" + JOB.id)
    for index in ("i:all", "i:tk:tasks.echo", "i:q:default", "i:tn:t1", "i:st:running", "run"):
        assert sync_redis.zscore(root + index, JOB.id) is None
    assert sync_redis.hgetall(root + "counts") == {
        "default\0queued": "0",
        "default\0running": "0",
        "default\0succeeded": "1",
    }


async def test_a_failed_job_is_stored_as_before(
    store: tuple[RedisBackend, ManualClock, str], sync_redis: redis.Redis
) -> None:
    backend, clock, root = store
    job = NewJob(id="018bcfe5680000000000000000000002", task="tasks.echo", args=[], kwargs={})
    await backend.submit([job])
    clock.advance(0.5)
    [claimed] = await backend.claim("w-1", {"default": 1}, 1, 10.0)
    clock.advance(0.5)
    await backend.fail(Lease(job.id, claimed.token), {"message": "boom"})
    clock.advance(20.0)  # an expired lease finishes nothing either
    with pytest.raises(LeaseLost):
        await backend.complete(Lease(job.id, claimed.token), None)

    assert sync_redis.hget(root + "f:1700000000", job.id) == FAILED
    assert sync_redis.zrange(root + "ff:failed", 0, -1, withscores=True) == [
        ("1700000000", 1700000001.0)
    ]
