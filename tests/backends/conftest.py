"""Fixtures that run every backend test once per backend kind.

Each kind is one entry in :data:`BACKENDS`: a factory taking a private directory and the test's
:class:`ManualClock`. Tests move time with ``clock.advance(...)``; nothing sleeps for a lease.
A kind whose module cannot be imported errors (it never skips): a missing backend is a failure.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from offload.backends.base import Backend
from offload.backends.memory import MemoryBackend
from offload.core.clock import ManualClock
from offload.core.job import NewJob
from pgkit import postgres_schema_url
from rediskit import TEST_REDIS, RedisServer, redis_namespace_url

BackendFactory = Callable[[Path, ManualClock], Backend]


def _memory(workdir: Path, clock: ManualClock) -> Backend:
    return MemoryBackend(clock=clock)


def _sqlite(workdir: Path, clock: ManualClock) -> Backend:
    # Imported here so that a missing or broken module fails the sqlite tests loudly.
    from offload.backends.sqlite import SQLiteBackend

    return SQLiteBackend(str(workdir / "jobs.db"), clock=clock)


def _redis(workdir: Path, clock: ManualClock) -> Backend:
    from offload.backends.redis import RedisBackend

    return RedisBackend(redis_namespace_url(), clock=clock)


def _postgres(workdir: Path, clock: ManualClock) -> Backend:
    from offload.backends.postgres import PostgresBackend

    return PostgresBackend.from_url(postgres_schema_url(), clock=clock)  # skips without a server


#: Every backend the contract suite and the model test run against. Add a kind here.
BACKENDS: dict[str, BackendFactory] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": _redis,
    "postgres": _postgres,
}


@pytest.fixture
def make() -> Callable[..., NewJob]:
    """Build NewJobs with ids that sort in the order they are made."""
    counter = itertools.count(1)

    def make(**fields: Any) -> NewJob:
        fields.setdefault("id", f"{next(counter):032x}")
        fields.setdefault("task", "tasks.echo")
        fields.setdefault("args", [])
        fields.setdefault("kwargs", {})
        return NewJob(**fields)

    return make


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def redis_store(clock: ManualClock) -> AsyncIterator[Backend]:
    """A Redis backend of its own namespace on the test server, on the test's clock."""
    from offload.backends.redis import RedisBackend

    backend = RedisBackend(redis_namespace_url(), clock=clock)
    await backend.open()
    yield backend
    await backend.close()


@pytest.fixture
def sync_redis() -> Iterator[redis.Redis]:
    """A blocking client of the test server, to look at what the scripts stored."""
    client = redis.Redis.from_url(TEST_REDIS, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(params=list(BACKENDS))
def backend_factory(request: pytest.FixtureRequest) -> BackendFactory:
    """The factory of one backend kind (tests that build several backends use this)."""
    return BACKENDS[request.param]


@pytest.fixture
async def backend(
    backend_factory: BackendFactory, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Backend]:
    """A fresh, opened backend on the test's manual clock; closed after the test."""
    store = backend_factory(tmp_path, clock)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for one test module, without persistence (a restart loses its
    data, functions and scripts); pausing or restarting it touches no other test."""
    srv = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False)
    srv.start()
    yield srv
    srv.stop()
