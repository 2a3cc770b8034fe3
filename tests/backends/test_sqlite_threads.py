"""The SQLite backend's helper threads answer every caller (issue 23 items 11 and 15): a close
with calls in flight, a connection lost under the writer, a bug in the writer, a failing
wake-up probe and a watcher that cannot connect never leave a caller waiting forever.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from offload.backends.sqlite import SQLiteBackend
from offload.backends.sqlite.watch import Watcher
from offload.core.ids import new_job_id
from offload.core.job import NewJob
from offload.errors import BackendError

DEADLINE = 20.0  # seconds a caller may wait before the test calls it stuck


def job() -> NewJob:
    return NewJob(id=new_job_id(), task="tasks.echo", args=[], kwargs={})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    backend = SQLiteBackend(str(tmp_path / "jobs.db"))
    await backend.open()
    yield backend
    await backend.close()


async def test_close_answers_every_call_in_flight(tmp_path: Path) -> None:
    for round_ in range(3):
        backend = SQLiteBackend(str(tmp_path / f"jobs{round_}.db"))
        await backend.open()

        async def submitter(b: SQLiteBackend = backend) -> None:
            for _ in range(50):
                try:
                    await b.submit([job()])
                except BackendError:
                    return

        callers = [asyncio.create_task(submitter()) for _ in range(20)]
        await asyncio.sleep(0.01)
        await backend.close()
        _, stuck = await asyncio.wait(callers, timeout=DEADLINE)
        for task in stuck:
            task.cancel()
        assert not stuck, f"{len(stuck)} callers still waiting after close"


async def test_a_call_after_close_is_refused(store: SQLiteBackend) -> None:
    await store.close()
    with pytest.raises(BackendError, match="closed"):
        await store.submit([job()])


async def test_the_writer_survives_losing_its_connection(store: SQLiteBackend) -> None:
    with pytest.raises(BackendError, match="outside any operation"):
        await asyncio.wait_for(store._writer.run(lambda conn: conn.close()), DEADLINE)
    new = job()
    await asyncio.wait_for(store.submit([new]), DEADLINE)
    assert await store.get(new.id) is not None


class Bug(BaseException):
    """Not an Exception: escapes every ordinary handler."""


async def test_a_writer_that_dies_fails_its_callers_and_refuses_new_ones(
    store: SQLiteBackend,
) -> None:
    def crash(conn: sqlite3.Connection) -> None:
        raise Bug

    with pytest.raises(BackendError):
        await asyncio.wait_for(store._writer.run(crash), DEADLINE)
    with pytest.raises(BackendError):
        await asyncio.wait_for(store.submit([job()]), DEADLINE)


async def test_a_failing_probe_wakes_its_waiter_and_the_next_wait_still_works(
    store: SQLiteBackend,
) -> None:
    def broken(conn: sqlite3.Connection) -> float:
        raise ValueError("a bug in a probe")

    await asyncio.wait_for(store._watcher.wait(broken), DEADLINE)
    await asyncio.wait_for(store._watcher.wait(lambda conn: 0.0), DEADLINE)


async def test_a_watcher_that_could_not_connect_tries_again(tmp_path: Path) -> None:
    attempts: list[int] = []
    probed: list[bool] = []

    def connect() -> sqlite3.Connection:
        attempts.append(1)
        if len(attempts) == 1:
            raise sqlite3.OperationalError("unable to open database file")
        return sqlite3.connect(tmp_path / "w.db", check_same_thread=False)

    def probe(conn: sqlite3.Connection) -> float:
        probed.append(True)
        return 0.0

    watcher = Watcher(connect, 0.002)
    try:
        await asyncio.wait_for(watcher.wait(probe), DEADLINE)  # woken: no connection yet
        await asyncio.wait_for(watcher.wait(probe), DEADLINE)
        assert probed, "the watcher never connected again"
    finally:
        await asyncio.to_thread(watcher.close)


async def test_a_submit_whose_caller_gave_up_while_the_file_was_locked_is_not_stored(
    store: SQLiteBackend,
) -> None:
    holder = sqlite3.connect(store.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        given_up = job()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.submit([given_up]), 0.3)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    later = job()
    await asyncio.wait_for(store.submit([later]), DEADLINE)  # the writer has moved past it
    assert await store.get(later.id) is not None
    assert await store.get(given_up.id) is None
