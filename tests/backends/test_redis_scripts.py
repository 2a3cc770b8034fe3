"""The Redis scripts check their own input and tolerate missing data (issue 23): a number that
cannot be stored is refused before the first write even when Python's check is bypassed, and
a job hash that vanished while its id was still queued or running is skipped, not half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from offload.backends.base import CANCEL_INSTEAD, IDEMPOTENCY_WINDOW
from offload.backends.redis import RedisBackend
from offload.backends.redis.records import encode_group as _encode_group
from offload.core.clock import ManualClock
from offload.core.job import Lease, NewJob
from offload.core.states import State
from rediskit import TEST_REDIS

LEASE = 30.0
ALL = {"default": 100}


def job(n: int, **fields: Any) -> NewJob:
    return NewJob(id=f"{n:032x}", task="tasks.echo", args=[n], kwargs={}, **fields)


@pytest.fixture
def store(redis_store: RedisBackend) -> RedisBackend:
    return redis_store


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS, decode_responses=True)
    yield client
    client.close()


def rows(jobs: list[NewJob]) -> bytes:
    return orjson.dumps(_encode_group(jobs)[0])


@pytest.mark.parametrize(
    ("column", "value"),
    [(4, "nan"), (5, "=nan"), (5, "=inf"), (13, "=nan"), (3, "9007199254740993"), (3, "1.5")],
)
async def test_submit_script_refuses_bad_numbers_before_writing_that_group(
    store: RedisBackend, column: int, value: str
) -> None:
    bad = orjson.loads(rows([job(1), job(2)]))
    bad[1][column] = value
    args = [store._now_arg(), repr(IDEMPOTENCY_WINDOW), orjson.dumps(bad), rows([job(3)])]
    reply = await store._script("submit", args)
    assert reply[1][0] == "invalid"
    assert reply[2][0] == "ok"
    assert await store.get(job(1).id) is None
    assert await store.get(job(2).id) is None
    assert (await store.get(job(3).id)) is not None
    claimed = await store.claim("w1", ALL, 10, LEASE)
    assert [j.id for j in claimed] == [job(3).id]


async def test_finish_script_refuses_a_nan_retry_and_keeps_the_rest_of_the_batch(
    store: RedisBackend,
) -> None:
    await store.submit([job(1, result_ttl=60.0), job(2)])
    first, second = await store.claim("w1", ALL, 2, LEASE)
    args: list[Any] = [store._now_arg(), CANCEL_INSTEAD]
    args += [8, first.id, str(first.token), "finish", "succeeded", "succeeded", "=1", "", ""]
    args += [6, second.id, str(second.token), "retry", "nan", '{"message": "x"}', ""]
    assert await store._script("finish", args) == ["ok", "invalid"]
    assert (await store.get(first.id)).status is State.SUCCEEDED  # type: ignore[union-attr]
    assert (await store.get(second.id)).status is State.RUNNING  # type: ignore[union-attr]
    [stats] = await store.stats()
    assert stats.count(State.RUNNING) == 1
    assert stats.count(State.SUCCEEDED) == 1
    await store.complete(Lease(second.id, second.token), None)


async def test_claim_skips_a_queued_id_whose_job_hash_is_gone(
    store: RedisBackend, raw: redis.Redis
) -> None:
    await store.submit([job(1), job(2), job(3)])
    raw.delete(f"{store.root}j:{job(2).id}")  # evicted, or a stray DEL
    claimed = await store.claim("w1", ALL, 3, LEASE)
    assert sorted(j.id for j in claimed) == [job(1).id, job(3).id]
    assert not raw.exists(f"{store.root}j:{job(2).id}")  # no partial hash written
    assert await store.claim("w1", ALL, 3, LEASE) == []  # and the stale id is gone
    for record in claimed:
        await store.complete(Lease(record.id, record.token), None)


async def test_reap_skips_a_partial_hash_and_reaps_the_rest(
    store: RedisBackend, raw: redis.Redis, clock: ManualClock
) -> None:
    await store.submit([job(1), job(2)])
    first, second = await store.claim("w1", ALL, 2, LEASE)
    key = f"{store.root}j:{first.id}"
    raw.delete(key)
    raw.hset(key, mapping={"status": "running", "token": "1"})  # a partial hash
    clock.advance(LEASE + 1)
    assert await store.reap() == 2
    assert (await store.get(second.id)).status is State.QUEUED  # type: ignore[union-attr]
