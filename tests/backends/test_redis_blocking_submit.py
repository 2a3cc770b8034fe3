"""A sync submit on Redis is sent from the calling thread (``backends.redis.submitting``), not
through the portal: the same records, errors and guarantees as ``asubmit``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import offload
from offload.backends.redis import RedisBackend
from offload.errors import BackendError, BackendUnavailable, IdempotencyConflict, InvalidArguments
from rediskit import TEST_REDIS, redis_namespace_url

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def app() -> Iterator[offload.App]:
    app = offload.App(redis_namespace_url())
    yield app
    app.close()


def _add(app: offload.App) -> Any:
    @app.task(name="add", priority=3)
    def add(a: int, b: int) -> int:
        return a + b

    return add


def test_a_sync_submit_does_not_go_through_the_portal(
    app: offload.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    add = _add(app)
    add.submit(1, 2)  # the first one opens the backend on the portal
    calls: list[object] = []
    run_sync = app.run_sync
    monkeypatch.setattr(app, "run_sync", lambda coro: calls.append(coro) or run_sync(coro))
    job = add.options(meta={"who": "me"}).submit(3, b=4)
    assert calls == []
    stored = app.get_job(job.id).record  # read back through the portal
    assert stored.status is job.status is offload.State.QUEUED
    assert (stored.args, stored.kwargs, stored.meta) == ([3], {"b": 4}, {"who": "me"})
    assert (stored.priority, stored.created_at, stored.run_at) == (
        3,
        job.record.created_at,
        job.record.run_at,
    )


def test_bad_input_and_conflicts_raise_as_asubmit_does(app: offload.App) -> None:
    add = _add(app)
    with pytest.raises(InvalidArguments):
        add.submit(1)  # checked before anything is stored
    first = add.options(idempotency_key="k").submit(1, 2)
    again = add.options(idempotency_key="k").submit(1, 2)
    assert again.id == first.id
    with pytest.raises(IdempotencyConflict):
        add.options(idempotency_key="k").submit(1, 3)
    with pytest.raises(ValueError, match="priority"):
        add.options(priority=2**40).submit(1, 2)
    assert len(app.jobs(task="add")) == 1


def test_scheduled_and_threaded_submits(app: offload.App) -> None:
    add = _add(app)
    assert add.options(delay=60).submit(1, 2).status is offload.State.SCHEDULED
    errors: list[BaseException] = []

    def many() -> None:
        try:
            for i in range(25):
                add.submit(i, i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(app.jobs(task="add", status="queued", limit=500)) == 200


def test_scripts_are_reloaded_and_a_closed_app_reopens(app: offload.App) -> None:
    add = _add(app)
    add.submit(1, 2)
    redis.Redis.from_url(TEST_REDIS).script_flush()  # as after a Redis restart
    assert add.submit(2, 3).status is offload.State.QUEUED
    app.close()
    assert add.submit(3, 4).status is offload.State.QUEUED  # a new portal, a new backend
    assert len(app.jobs(task="add")) == 3


def test_an_unreachable_server_is_backend_unavailable() -> None:
    app = offload.App("redis://127.0.0.1:1/0?prefix=offload-test-nowhere")
    try:
        with pytest.raises(BackendUnavailable):
            _add(app).submit(1, 2)
    finally:
        app.close()


async def test_submit_blocking_needs_an_open_backend() -> None:
    maker = offload.App("memory://")
    _add(maker)
    backend = RedisBackend(redis_namespace_url())
    with pytest.raises(BackendError, match="not open"):
        backend.submit_blocking([maker.prepare("add", (1, 2))])
    await backend.open()
    try:
        new = maker.prepare("add", (1, 2))
        [record] = await asyncio.to_thread(backend.submit_blocking, [new])
        assert record.id == new.id
        assert await backend.get(new.id) == record
        [again] = await asyncio.to_thread(backend.submit_blocking, [new])  # a retried call
        assert again.id == new.id
    finally:
        await backend.close()
    with pytest.raises(BackendError, match="not open"):  # closed: not opened again
        backend.submit_blocking([maker.prepare("add", (1, 2))])


def test_a_large_sync_submit_many_takes_the_bulk_path(
    app: offload.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offload.backends.redis import backend as redis_backend

    add = _add(app)
    add.submit(0, 0)  # opens the backend
    bulk_calls: list[int] = []
    submit_bulk = redis_backend.submit_bulk

    async def counted(conn: Any, script: Any, root: str, now: Any, jobs: Any) -> Any:
        bulk_calls.append(len(jobs))
        return await submit_bulk(conn, script, root, now, jobs)

    monkeypatch.setattr(redis_backend, "submit_bulk", counted)
    small = app.submit_many([app.prepare(add.spec, [i, i], {}) for i in range(10)])
    assert bulk_calls == []  # a small call stays on the calling thread
    big = app.submit_many([app.prepare(add.spec, [i, i], {}) for i in range(2500)])
    assert bulk_calls == [2500]  # chunked and pipelined, as asubmit_many is
    assert len({j.id for j in small + big}) == 2510
    assert len(app.jobs(task="add", status="queued", limit=3000)) == 2511
