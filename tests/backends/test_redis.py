"""What only the Redis backend has: one hash slot, Redis time, script reloads, wake-ups, server
checks, bad URLs and credentials, and foreign data under its prefix.

The contract suite (contract/) covers the semantics it shares with every backend.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

import offload
from offload.backends.redis import RedisBackend
from offload.backends.redis import scripts as lua
from offload.backends.redis import server as redis_backend
from offload.core.clock import ManualClock
from offload.core.job import Lease, NewJob, WorkerInfo
from offload.core.states import State
from offload.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    IdempotencyConflict,
)
from rediskit import TEST_REDIS, RedisServer, redis_namespace_url
from upkit import free_port

LEASE = 30.0


def job(n: int, **fields: Any) -> NewJob:
    return NewJob(id=f"{n:032x}", task="tasks.echo", args=[n], kwargs={}, **fields)


@pytest.fixture
def sync_redis() -> redis.Redis:
    client = redis.Redis.from_url(TEST_REDIS, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def store() -> AsyncIterator[RedisBackend]:
    """A Redis backend on Redis time (no manual clock), in a fresh namespace."""
    backend = RedisBackend(redis_namespace_url())
    await backend.open()
    yield backend
    await backend.close()


def namespace_keys(client: redis.Redis, backend: RedisBackend) -> list[str]:
    return list(client.scan_iter(match=backend.root.replace("{", "[{]") + "*", count=1000))


async def test_every_key_of_a_namespace_is_in_one_cluster_slot(
    store: RedisBackend, sync_redis: redis.Redis
) -> None:
    clock_free = store
    [a, b, c, d] = await clock_free.submit(
        [
            job(1, idempotency_key="k"),
            job(2, queue="other", priority=5),
            job(3, delay=60),
            job(4, concurrency_key="tenant-7"),
        ]
    )
    claimed = await clock_free.claim("w1", {"default": 5, "other": 5}, 5, LEASE)
    leases = {r.id: Lease(r.id, r.token) for r in claimed}
    await clock_free.progress(leases[a.id], 0.5, "half")
    await clock_free.complete(leases[a.id], {"ok": True})
    await clock_free.fail(leases[b.id], {"type": "E", "message": "again"}, retry_in=30)
    await clock_free.release(leases[d.id])
    await clock_free.cancel(c.id)
    await clock_free.heartbeat(_worker("w1"), ttl=30)
    await clock_free.reap()

    keys = namespace_keys(sync_redis, clock_free)
    assert len(keys) > 15, keys  # jobs, histories, queues, indexes, counts, workers, idempotency
    slots = {key_slot(k.encode()) for k in keys}
    assert slots == {key_slot(clock_free.root.encode())}, keys


def test_scripts_touch_only_keys_under_their_one_declared_root() -> None:
    for name in lua.SCRIPTS:
        source = lua.script(name)
        assert re.search(r"KEYS\[[2-9]", source) is None, name
        # Every command's key is built from the root R (or is a variable that was).
        for call in re.finditer(r"redis\.call\('(\w+)', ([^,)]+)", source):
            command, key = call.groups()
            if command in ("TIME",):
                continue
            assert key.startswith("R ..") or re.fullmatch(r"[a-z_]+", key), (name, call[0])
        assert "'KEYS'" not in source, name
        assert "'SCAN'" not in source, name


async def test_times_come_from_redis_not_from_a_skewed_worker_clock(
    store: RedisBackend, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 300)  # this process runs 5 minutes fast
    seconds, micros = sync_redis.time()
    server_now = seconds + micros / 1e6

    [delayed] = await store.submit([job(1, delay=2.0)])
    assert delayed.status is State.SCHEDULED
    assert abs(delayed.created_at - server_now) < 5
    assert delayed.run_at == pytest.approx(delayed.created_at + 2.0)
    assert await store.claim("w1", {"default": 10}, 10, LEASE) == []  # not due: not early

    [now_job] = await store.submit([job(2)])
    [running] = await store.claim("w1", {"default": 10}, 10, 5.0)
    assert running.id == now_job.id
    assert running.lease_until is not None
    assert abs(running.lease_until - (server_now + 5.0)) < 5
    assert await store.reap() == 0  # the lease is not expired by a fast local clock
    assert abs(await store.now() - server_now) < 5


async def test_scripts_are_reloaded_after_the_server_forgets_them(
    store: RedisBackend, sync_redis: redis.Redis
) -> None:
    await store.submit([job(1)])
    sync_redis.script_flush()  # as after a Redis restart
    [record] = await store.submit([job(2)])
    assert record.status is State.QUEUED
    assert len(await store.claim("w1", {"default": 10}, 10, LEASE)) == 2


async def test_an_idle_worker_wakes_at_once_on_a_submit_from_another_client() -> None:
    url = redis_namespace_url()
    waiter, submitter = RedisBackend(url), RedisBackend(url)
    await waiter.open()
    await submitter.open()
    try:
        assert await waiter.claim("w1", {"default": 1}, 1, LEASE) == []
        waiting = asyncio.create_task(waiter.wait_for_work(["default"], 10.0))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        started = time.monotonic()
        await submitter.submit([job(1)])
        await asyncio.wait_for(waiting, 5.0)
        assert time.monotonic() - started < 2.0  # a wake-up, not the 10 s timeout
    finally:
        await waiter.close()
        await submitter.close()


async def test_concurrent_submits_stay_all_or_none_each(store: RedisBackend) -> None:
    await store.submit([job(999, idempotency_key="taken", fingerprint="a")])
    batches = [[job(i * 10), job(i * 10 + 1)] for i in range(1, 21)]
    batches[7] = [job(500), job(501, idempotency_key="taken", fingerprint="b")]
    results = await asyncio.gather(*(store.submit(b) for b in batches), return_exceptions=True)
    assert isinstance(results[7], IdempotencyConflict)
    for i, result in enumerate(results):
        if i != 7:
            assert not isinstance(result, BaseException), result
            assert [r.id for r in result] == [j.id for j in batches[i]]
    assert await store.get(job(500).id) is None  # the conflicting call stored nothing
    stats = {s.queue: s.count(State.QUEUED) for s in await store.stats()}
    assert stats == {"default": 1 + 2 * 19}


async def test_a_resubmitted_id_returns_the_stored_job(store: RedisBackend) -> None:
    [first] = await store.submit([job(1)])
    [again] = await store.submit([job(1)])  # a retried submit whose reply was lost
    assert again == first
    assert [s.count(State.QUEUED) for s in await store.stats()] == [1]


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:notaport/0", "invalid port"),
        ("redis://127.0.0.1:6379/zero", "database number"),
        ("redis://127.0.0.1:6379/0?prefix={x}", "without braces"),
        ("redis://127.0.0.1:6379/0?prefix=", "non-empty"),
    ],
)
def test_a_malformed_url_is_refused_with_what_to_fix(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        offload.App(url).new_backend()


async def test_an_unknown_url_option_is_refused_with_what_to_fix() -> None:
    # redis-py hands unknown query options to its connection class, which raised a bare
    # TypeError: every command printed a traceback instead of one line.
    backend = RedisBackend("redis://127.0.0.1:6379/0?bogus=1")
    with pytest.raises(ConfigurationError, match=r"unknown option.*bogus"):
        await backend.open()


async def test_an_unreachable_server_names_the_address() -> None:
    port = free_port()
    backend = RedisBackend(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(BackendUnavailable, match=f"cannot reach Redis at 127.0.0.1:{port}/0"):
        await backend.open()


async def test_credentials_are_checked_at_open(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=False, extra=("--requirepass", "s3cret"))
    server.start()
    try:
        wrong = RedisBackend(f"redis://:nope@127.0.0.1:{server.port}/0")
        with pytest.raises(ConfigurationError, match="rejected the credentials"):
            await wrong.open()
        missing = RedisBackend(f"redis://127.0.0.1:{server.port}/0")
        with pytest.raises(ConfigurationError, match="needs a password"):
            await missing.open()
        right = RedisBackend(f"redis://:s3cret@127.0.0.1:{server.port}/0")
        await right.open()
        await right.ping()
        await right.close()
    finally:
        server.stop()


class _FakeServer:
    """Just enough of a redis-py client for the startup check."""

    def __init__(self, info: dict[str, Any], save: str = "") -> None:
        self._info = info
        self._save = save

    async def info(self) -> dict[str, Any]:
        return self._info

    async def config_get(self, name: str) -> dict[str, str]:
        return {name: self._save}


async def test_a_server_older_than_the_minimum_is_refused() -> None:
    backend = RedisBackend("redis://127.0.0.1:6379/0")
    fake: Any = _FakeServer({"redis_version": "5.0.14", "maxmemory_policy": "noeviction"})
    with pytest.raises(ConfigurationError, match=r"version 5\.0\.14; offload needs Redis 6\.2"):
        await backend._check_server(fake)


@pytest.mark.parametrize(
    ("info", "save", "says"),
    [
        (
            {"maxmemory_policy": "allkeys-lru", "aof_enabled": 1},
            "",
            "maxmemory-policy is allkeys-lru",
        ),
        ({"maxmemory_policy": "noeviction", "aof_enabled": 0}, "", "persistence is off"),
        ({"maxmemory_policy": "noeviction", "aof_enabled": 0}, "3600 1", "only RDB snapshots"),
    ],
)
async def test_settings_that_can_lose_jobs_warn_or_refuse_when_strict(
    info: dict[str, Any],
    save: str,
    says: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_backend, "_warned", set())
    fake: Any = _FakeServer({"redis_version": "7.0.15", **info}, save)
    with caplog.at_level(logging.WARNING, logger="offload.backends.redis"):
        await RedisBackend("redis://127.0.0.1:6379/0")._check_server(fake)
    assert says in caplog.text
    with pytest.raises(ConfigurationError, match=f"{re.escape(says)}.*strict"):
        await RedisBackend("redis://127.0.0.1:6379/0?strict=true")._check_server(fake)


async def test_a_safe_server_passes_the_strict_check(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)  # AOF always, noeviction
    server.start()
    try:
        backend = RedisBackend(f"{server.url}?strict=true")
        await backend.open()
        await backend.close()
    finally:
        server.stop()


# -- foreign or corrupt data under the prefix --------------------------------------------------


async def test_a_corrupt_job_is_reported_and_the_others_still_run(
    store: RedisBackend, sync_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    [good] = await store.submit([job(1)])
    [bad] = await store.submit([job(2)])
    sync_redis.hdel(f"{store.root}j:{bad.id}", "args")  # someone else's hands were here
    with pytest.raises(BackendError, match=re.escape(f"{store.root}j:{bad.id}")):
        await store.get(bad.id)
    with caplog.at_level(logging.ERROR, logger="offload.backends.redis"):
        claimed = await store.claim("w1", {"default": 10}, 10, LEASE)
    assert [r.id for r in claimed] == [good.id]
    assert "cannot be read" in caplog.text


async def test_a_foreign_key_of_the_wrong_type_raises_a_backend_error(
    store: RedisBackend, sync_redis: redis.Redis
) -> None:
    await store.submit([job(1)])
    sync_redis.delete(f"{store.root}run")
    sync_redis.set(f"{store.root}run", "not a sorted set")
    with pytest.raises(BackendError, match="refused a command"):
        await store.claim("w1", {"default": 10}, 10, LEASE)


async def test_a_worker_survives_foreign_data_and_runs_the_good_jobs(
    sync_redis: redis.Redis,
) -> None:
    url = redis_namespace_url()
    settings = offload.Settings(backend=url, idle_wait=0.1, lease_seconds=2.0)
    app = offload.App(settings=settings)

    @app.task(name="echo")
    async def echo(n: int) -> int:
        return n

    bad = await echo.asubmit(0)
    backend = await app.backend()
    assert isinstance(backend, RedisBackend)
    sync_redis.hset(f"{backend.root}j:{bad.id}", "kwargs", "{not json")
    good = [await echo.asubmit(i) for i in range(1, 6)]
    worker = offload.Worker(app)
    running = asyncio.create_task(worker.run())
    try:
        for handle in good:
            assert await handle.aresult(timeout=10) == int(handle.record.args[0])
        assert not running.done()
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
        await app.aclose()


def _worker(worker_id: str) -> WorkerInfo:
    return WorkerInfo(worker_id, "w", "host", 1, ["default"], 4, 1.0, 0.0, 0, 0)


async def test_manual_clock_time_is_exact() -> None:
    clock = ManualClock(1_700_000_000.123456789)
    backend = RedisBackend(redis_namespace_url(), clock=clock)
    await backend.open()
    try:
        [record] = await backend.submit([job(1, delay=0.1)])
        assert record.created_at == clock.now()
        assert (await backend.get(record.id)) == record
    finally:
        await backend.close()
