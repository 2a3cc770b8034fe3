"""The Redis bulk submit (``backends.redis.bulk``, SUBMIT_BULK): a large ``submit`` stores
exactly what one-at-a-time submits store, keeps idempotency inside and across calls, and a bad
job refuses the call before anything is written."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from offload.backends.redis import RedisBackend, bulk
from offload.core.clock import ManualClock
from offload.core.ids import new_job_id
from offload.core.job import Lease, NewJob
from offload.core.limits import Limits
from offload.core.states import State
from offload.errors import IdempotencyConflict, SerializationError
from rediskit import TEST_REDIS, redis_namespace_url

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def store() -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(redis_namespace_url(), clock=ManualClock())
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def raw() -> redis.Redis:
    return redis.Redis.from_url(TEST_REDIS, decode_responses=True)


def _id(n: int, batch: str = "a") -> str:
    return f"{batch}{n:031x}"


def _job(n: int, batch: str = "a", **fields: Any) -> NewJob:
    fields.setdefault("task", "tasks.echo")
    fields.setdefault("args", [n])
    fields.setdefault("kwargs", {})
    return NewJob(id=_id(n, batch), **fields)


def _varied(n: int, batch: str) -> NewJob:
    """Jobs of every shape: delays, due times, priorities, keys, limits, ttl, meta, tenants."""
    extra: dict[str, Any] = {"priority": n % 5 - 2, "queue": ("q1", "q2")[n % 2]}
    if n % 3 == 0:
        extra["delay"] = 30.0 + n
    if n % 7 == 0:
        extra["run_at"] = 1_700_000_000.0 - 5 + n % 11
    if n % 4 == 0:
        extra["concurrency_key"] = f"ck{n % 3}"
    if n % 5 == 0:
        extra["limits"] = Limits(concurrency=2, key_rate=0.5)
    if n % 6 == 0:
        extra["result_ttl"] = 60.0
        extra["meta"] = {"n": n, "nested": {"x": [1.5]}}
    if n % 9 == 0:
        extra["tenant"] = "acme"
        extra["idempotency_key"] = f"key-{n}"
        extra["fingerprint"] = f"fp-{n}"
    return _job(n, batch, **extra)


def _state(raw: redis.Redis, root: str, ids: list[str], batch: str) -> dict[str, Any]:
    """Everything stored about ``ids``, with the batch letter of their ids made neutral."""

    def neutral(value: str) -> str:
        return "_" + value[1:] if len(value) == 32 and value.startswith(batch) else value

    hashes = {}
    for i in ids:
        hashes[neutral(i)] = {k: neutral(v) for k, v in raw.hgetall(f"{root}j:{i}").items()}
    zsets, idem = {}, {}
    for key in raw.scan_iter(match=root + "*", count=1000):
        name = key[len(root) :]
        if raw.type(key) == "zset":
            zsets[name] = {neutral(m): s for m, s in raw.zrange(key, 0, -1, withscores=True)}
        elif name.startswith("idem:"):
            idem[name] = neutral(raw.get(key).split("\0")[0])
    return {"hashes": hashes, "zsets": zsets, "counts": raw.hgetall(root + "counts"), "idem": idem}


async def test_a_bulk_submit_stores_what_one_at_a_time_submits_store(raw: redis.Redis) -> None:
    n = 300  # > BULK_MIN, and every shape of job several times
    states = []
    for batch, one_by_one in (("a", True), ("b", False)):
        backend = RedisBackend(redis_namespace_url(), clock=ManualClock())
        await backend.open()
        try:
            jobs = [_varied(i, batch) for i in range(n)]
            if one_by_one:
                records = [(await backend.submit([job]))[0] for job in jobs]
            else:
                records = await backend.submit(jobs)
            assert [r.id for r in records] == [j.id for j in jobs]
            states.append(
                (
                    _state(raw, backend.root, [j.id for j in jobs], batch),
                    [(r.status, r.run_at, r.priority, r.args, r.meta, r.tenant) for r in records],
                )
            )
        finally:
            await backend.close()
    (single, single_records), (many, many_records) = states
    assert len(single["hashes"]) == n
    assert all(single["hashes"].values())
    assert many == single
    assert many_records == single_records
    statuses = {r[0] for r in many_records}
    assert statuses == {State.QUEUED, State.SCHEDULED}


async def test_fractional_times_are_stored_as_one_at_a_time_submits_store_them(
    raw: redis.Redis,
) -> None:
    # The bulk script formats the shared times itself (%.17g, once): with a clock and due
    # times that are not whole seconds, every hash and score must still match SUBMIT's.
    states = []
    for batch, one_by_one in (("a", True), ("b", False)):
        backend = RedisBackend(redis_namespace_url(), clock=ManualClock(1_700_000_000.1234567))
        await backend.open()
        try:
            jobs = [
                _job(
                    i, batch, delay=i / 7, run_at=(1_700_000_000.3 + i / 3) if i % 5 == 0 else None
                )
                for i in range(100)
            ]
            if one_by_one:
                records = [(await backend.submit([job]))[0] for job in jobs]
            else:
                records = await backend.submit(jobs)
            states.append(
                (
                    _state(raw, backend.root, [j.id for j in jobs], batch),
                    [(r.status, r.run_at, r.created_at, r.updated_at) for r in records],
                )
            )
        finally:
            await backend.close()
    assert states[1] == states[0]
    assert len({r[1] for r in states[0][1]}) == 100  # due times, none a whole second


async def test_idempotency_keys_repeated_inside_and_across_large_batches(
    store: RedisBackend, raw: redis.Redis
) -> None:
    def batch(letter: str) -> list[NewJob]:
        jobs = []
        for i in range(5000):
            fields: dict[str, Any] = {"priority": i % 3, "delay": 10.0 if i % 4 == 0 else 0.0}
            if i % 2 == 0:  # 1,250 keys, each used by 2 jobs of this batch (one per half)
                fields["idempotency_key"] = f"k{i % 2500}"
                fields["fingerprint"] = f"f{i % 2500}"
            jobs.append(_job(i, letter, **fields))
        return jobs

    first = await store.submit(batch("a"))
    assert len(first) == 5000
    by_key = {r.idempotency_key: r.id for r in first if r.idempotency_key}
    assert len(by_key) == 1250
    for i, record in enumerate(first):
        if i % 2 == 0:  # the job stored first under the key, whichever chunk it is in
            assert record.id == _id(i % 2500, "a")
        else:
            assert record.id == _id(i, "a")
    stored = raw.zcard(store.root + "i:all")
    assert stored == 2500 + 1250
    second = await store.submit(batch("b"))  # the keys name batch a's jobs
    for i, record in enumerate(second):
        assert record.id == (_id(i % 2500, "a") if i % 2 == 0 else _id(i, "b"))
    assert raw.zcard(store.root + "i:all") == stored + 2500
    counts = raw.hgetall(store.root + "counts")
    assert sum(int(v) for v in counts.values()) == stored + 2500
    scheduled = sum(int(v) for k, v in counts.items() if k.endswith("\0scheduled"))
    assert scheduled == raw.zcard(store.root + "sched") > 0


async def test_a_repeated_bulk_submit_returns_the_jobs_as_stored(
    store: RedisBackend, raw: redis.Redis
) -> None:
    jobs = [_job(i, delay=float(i % 2)) for i in range(2500)]
    first = await store.submit(jobs)
    again = await store.submit(jobs)  # e.g. a retry after a broken connection
    assert again == first
    assert raw.zcard(store.root + "i:all") == 2500
    twice = [_job(i % 100) for i in range(200)]  # the same id twice in one call
    records = await store.submit(twice)
    assert [r.id for r in records] == [j.id for j in twice]
    assert raw.zcard(store.root + "i:all") == 2500


def _timed(at: float, n: int) -> NewJob:
    return NewJob(new_job_id(at), "tasks.echo", [n], {})


async def test_a_bulk_submit_of_ended_jobs_returns_them_as_stored(raw: redis.Redis) -> None:
    # Ids of the clock's time: the ended records sit in the buckets of their ids (looked up
    # with one HMGET per bucket), not in the ``fp`` hash of misplaced ids.
    clock = ManualClock()
    store = RedisBackend(redis_namespace_url(), clock=clock)
    await store.open()
    try:
        ended = [_timed(clock.now() + i / 1000, i) for i in range(150)]
        await store.submit(ended)
        claimed = await store.claim("w", {"default": 150}, 150, 30.0)
        assert len(claimed) == 150
        for job in claimed:
            await store.complete(Lease(job.id, job.token), {"ok": job.id})
        assert not raw.exists(store.root + "fp")
        fresh = [_timed(clock.now() + 0.2 + i / 1000, i) for i in range(100)]
        mixed = [j for pair in zip(ended[:100], fresh, strict=True) for j in pair] + ended[100:]
        records = await store.submit(mixed)
        assert [r.id for r in records] == [j.id for j in mixed]
        assert [r.status for r in records[:4]] == [State.SUCCEEDED, State.QUEUED] * 2
        assert all(r.status is State.SUCCEEDED for r in records[200:])
        assert records[0].result == {"ok": ended[0].id}
        assert raw.zcard(store.root + "i:all") == 100  # only the fresh jobs are live
    finally:
        await store.close()


async def test_a_connection_killed_while_the_chunks_run_repeats_the_call_safely(
    store: RedisBackend, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis kills the call's connection after every chunk was sent, while Python drafts the
    # records: the replies are lost, some or all chunks stored. The backend repeats the call
    # once; it must return every job once, as stored, and store nothing twice.
    jobs = [_job(i, delay=float(i % 2)) for i in range(2500)]
    real, kills = bulk._drafts, []

    def killing(part: Any, blobs: Any) -> Any:
        if not kills:
            pool = store.client.connection_pool
            for conn in pool._get_in_use_connections():  # type: ignore[attr-defined]
                host, port = conn._writer.get_extra_info("sockname")[:2]
                kills.append(raw.client_kill(f"{host}:{port}"))
        return real(part, blobs)

    monkeypatch.setattr(bulk, "_drafts", killing)
    records = await store.submit(jobs)
    assert kills == [True]
    assert [r.id for r in records] == [j.id for j in jobs]
    assert records == [await store.get(j.id) for j in jobs]
    assert raw.zcard(store.root + "i:all") == 2500
    assert raw.zcard(store.root + "sched") == 1250
    counts = raw.hgetall(store.root + "counts")
    assert sum(int(v) for v in counts.values()) == 2500


@pytest.mark.parametrize("bad", [{"priority": 2**40}, {"result_ttl": -1.0}, {"delay": math.inf}])
async def test_the_script_refuses_a_bad_job_among_many_alike(
    store: RedisBackend,
    raw: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    bad: dict[str, Any],
) -> None:
    # Python's checks skipped: the script's own (it checks a run of jobs with the same numbers
    # once) must still find the one bad job among 999 alike.
    monkeypatch.setattr(bulk, "check_new_job", lambda job: None)
    jobs = [_job(i) for i in range(1000)]
    jobs[700] = _job(700, **bad)
    with pytest.raises(ValueError, match=f"job {jobs[700].id}"):
        await store.submit(jobs)
    assert raw.zcard(store.root + "i:all") == 0
    assert not list(raw.scan_iter(match=store.root + "j:*"))


@pytest.mark.parametrize(
    ("bad", "says", "error"),
    [
        ({"priority": 2**40}, "priority", ValueError),
        ({"delay": math.nan}, "delay", ValueError),
        ({"meta": {"x": math.inf}}, "meta", ValueError),
        ({"args": [object()]}, "JSON", SerializationError),
        ({"limits": Limits(concurrency=-1)}, "concurrency", ValueError),
    ],
)
async def test_a_bad_job_in_the_middle_refuses_the_whole_call(
    store: RedisBackend, raw: redis.Redis, bad: dict[str, Any], says: str, error: type[Exception]
) -> None:
    jobs = [_job(i) for i in range(3000)]
    jobs[1500] = _job(1500, **bad)
    with pytest.raises(error) as caught:
        await store.submit(jobs)
    message = str(caught.value)
    assert "index 1500" in message
    assert says in message
    assert "nothing was stored" in message
    assert raw.zcard(store.root + "i:all") == 0
    assert not list(raw.scan_iter(match=store.root + "j:*"))


async def test_a_key_reused_with_another_request_refuses_the_whole_call(
    store: RedisBackend, raw: redis.Redis
) -> None:
    jobs = [_job(i) for i in range(2500)]
    jobs[10] = _job(10, idempotency_key="k", fingerprint="one")
    jobs[2200] = _job(2200, idempotency_key="k", fingerprint="two")
    with pytest.raises(IdempotencyConflict):  # inside the call: found before sending
        await store.submit(jobs)
    [held] = await store.submit([_job(0, "z", idempotency_key="k2", fingerprint="one")])
    jobs = [_job(i) for i in range(2500)]
    jobs[2400] = _job(2400, idempotency_key="k2", fingerprint="two")  # in the third chunk
    with pytest.raises(IdempotencyConflict) as caught:
        await store.submit(jobs)
    assert caught.value.job_id == held.id
    assert raw.zcard(store.root + "i:all") == 1  # not even the first chunk was written


async def test_a_chunk_refused_after_earlier_ones_were_stored_says_how_many(
    store: RedisBackend, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if another call stored the key between this call's first and second chunks: the
    # first chunk's check of the later keys is skipped to let the second chunk meet it.
    [held] = await store.submit([_job(0, "z", idempotency_key="k", fingerprint="one")])
    monkeypatch.setattr(bulk, "_later_keys", lambda jobs: None)
    jobs = [_job(i) for i in range(3500)]
    jobs[1700] = _job(1700, idempotency_key="k", fingerprint="two")
    with pytest.raises(bulk.BulkSubmitError) as caught:
        await store.submit(jobs)
    err = caught.value
    assert err.index == bulk.CHUNK
    assert isinstance(err.cause, IdempotencyConflict)
    assert err.cause.job_id == held.id
    assert [r.id for r in err.stored] == [j.id for j in jobs[: bulk.CHUNK]]
    assert "jobs 0 to 999" in str(err)
    assert "from index 1000" in str(err)
    # The refused chunk and the ones after it (gated) wrote nothing.
    assert raw.zcard(store.root + "i:all") == 1 + bulk.CHUNK
    assert raw.exists(f"{store.root}j:{jobs[bulk.CHUNK].id}") == 0
    assert raw.exists(f"{store.root}j:{jobs[-1].id}") == 0


async def test_the_bulk_script_is_reloaded_after_the_server_forgets_it(
    store: RedisBackend, raw: redis.Redis
) -> None:
    await store.submit([_job(i) for i in range(100)])
    raw.script_flush()  # as after a Redis restart
    records = await store.submit([_job(i, "b") for i in range(2100)])  # three chunks
    assert [r.id for r in records] == [_id(i, "b") for i in range(2100)]
    assert raw.zcard(store.root + "i:all") == 2200
