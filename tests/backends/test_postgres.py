"""What only the PostgreSQL backend promises beyond the contract suite: migrations that do not
race, caps and claims held across processes, the server's clock, poll-only wake-ups, URL
options, and job inserts that join a caller's own transaction."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from offload.backends import open_backend
from offload.backends.postgres import PostgresBackend
from offload.backends.postgres import schema as pg_schema
from offload.backends.postgres.backend import split_url
from offload.backends.postgres.plan import run_sync
from offload.backends.postgres.submit import Names, submit_plan
from offload.core.clock import ManualClock
from offload.core.job import Lease, NewJob
from offload.core.limits import Limits
from offload.core.states import State
from offload.errors import BackendUnavailable, ConfigurationError
from pgkit import postgres_schema_url, session_database

LEASE = 30.0


def job(n: int, **fields: object) -> NewJob:
    return NewJob(id=f"{n:032x}", task="tasks.echo", args=[], kwargs={}, **fields)  # type: ignore[arg-type]


@pytest.fixture
def url() -> str:
    return postgres_schema_url()


@pytest.fixture
async def backend(url: str) -> AsyncIterator[PostgresBackend]:
    store = PostgresBackend.from_url(url, clock=ManualClock())
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _versions(url: str) -> list[int]:
    conninfo, options = split_url(url)
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            pg_schema.version_sql(options["schema"]).replace("max(version)", "version")
        ).fetchall()  # type: ignore[arg-type]
    return [r[0] for r in rows]


async def test_backends_opening_together_migrate_once(url: str) -> None:
    stores = [PostgresBackend.from_url(url) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert _versions(url) == [pg_schema.SCHEMA_VERSION]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


def test_processes_starting_together_do_not_race(url: str) -> None:
    code = (
        "import asyncio, sys\n"
        "from offload.backends import open_backend\n"
        "async def main():\n"
        "    b = open_backend(sys.argv[1]); await b.open(); await b.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    assert _versions(url) == [pg_schema.SCHEMA_VERSION]


def test_the_dry_run_sql_builds_the_schema_the_backend_expects(url: str) -> None:
    conninfo, options = split_url(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(pg_schema.migration_sql(options["schema"]))  # type: ignore[arg-type]
    assert _versions(url) == [pg_schema.SCHEMA_VERSION]

    async def use() -> None:
        store = PostgresBackend.from_url(url)
        await store.open()
        try:
            await store.submit([job(1)])
            assert (await store.get(f"{1:032x}")) is not None
        finally:
            await store.close()

    asyncio.run(use())


async def test_concurrent_claimers_never_share_a_job(url: str) -> None:
    stores = [PostgresBackend.from_url(url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await stores[0].submit([job(n) for n in range(200)])

        async def drain(store: PostgresBackend, name: str) -> list[str]:
            got: list[str] = []
            while claimed := await store.claim(name, {"default": 7}, 7, LEASE):
                got += [j.id for j in claimed]
            return got

        results = await asyncio.gather(*(drain(s, f"w{i}") for i, s in enumerate(stores)))
        every = [job_id for got in results for job_id in got]
        assert len(every) == 200
        assert len(set(every)) == 200
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_global_cap_holds_across_backends_claiming_together(url: str) -> None:
    stores = [PostgresBackend.from_url(url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        capped = Limits(concurrency=3)
        await stores[0].submit([job(n, limits=capped) for n in range(40)])
        rounds = await asyncio.gather(
            *(s.claim(f"w{i}", {"default": 10}, 10, LEASE) for i, s in enumerate(stores))
        )
        assert sum(len(r) for r in rounds) == 3
        [stats] = await stores[0].stats()
        assert stats.count(State.RUNNING) == 3
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_times_come_from_the_server_clock(url: str) -> None:
    store = PostgresBackend.from_url(url)  # no clock given: the server's
    await store.open()
    try:
        assert abs(await store.now() - time.time()) < 5.0
        [record] = await store.submit([job(1, delay=60.0)])
        assert record.status is State.SCHEDULED
        assert abs(record.run_at - (time.time() + 60.0)) < 5.0
    finally:
        await store.close()


async def test_poll_only_mode_wakes_a_waiter_without_listen(url: str) -> None:
    store = PostgresBackend.from_url(f"{url}&notify=false&prepare=false&poll_interval=0.05")
    other = PostgresBackend.from_url(url)
    await store.open()
    await other.open()
    try:
        assert store.names.channel is None
        waiting = asyncio.create_task(store.wait_for_work(["default"], timeout=30.0))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        started = time.monotonic()
        await other.submit([job(1)])
        await asyncio.wait_for(waiting, 5.0)
        assert time.monotonic() - started < 5.0
    finally:
        await store.close()
        await other.close()


def test_url_options_are_ours_and_the_rest_go_to_libpq() -> None:
    conninfo, options = split_url(
        "postgresql://u:p@db:5433/app?schema=jobs&notify=false&sslmode=disable"
    )
    assert conninfo == "postgresql://u:p@db:5433/app?sslmode=disable"
    assert options == {"schema": "jobs", "notify": "false"}
    store = open_backend("postgres://db/app?schema=jobs_2")
    assert isinstance(store, PostgresBackend)
    assert store.schema_name == "jobs_2"
    for bad in ("postgresql://db/app?schema=Bad-Name", "postgresql://db/app?notify=maybe"):
        with pytest.raises(ConfigurationError):
            open_backend(bad)


def test_a_job_inserted_in_a_callers_rolled_back_transaction_never_exists(url: str) -> None:
    conninfo, options = split_url(url)

    async def prepare() -> None:
        store = PostgresBackend.from_url(url)
        await store.open()
        await store.close()

    asyncio.run(prepare())
    names = Names(options["schema"], f"offload:{options['schema']}")
    with psycopg.connect(conninfo) as conn:
        run_sync(conn, submit_plan(names, None, [job(1)]))
        conn.rollback()
        run_sync(conn, submit_plan(names, None, [job(2)]))
        conn.commit()
        ids = [r[0] for r in conn.execute(f'SELECT id FROM "{options["schema"]}".jobs')]  # type: ignore[arg-type]
    assert ids == [f"{2:032x}"]


async def test_a_finished_capped_job_frees_its_slot_for_another_backend(
    backend: PostgresBackend,
) -> None:
    capped = Limits(concurrency=1)
    await backend.submit([job(1, limits=capped), job(2, limits=capped)])
    [first] = await backend.claim("w1", {"default": 5}, 5, LEASE)
    assert await backend.claim("w2", {"default": 5}, 5, LEASE) == []
    await backend.complete(Lease(first.id, first.token), None)
    [second] = await backend.claim("w2", {"default": 5}, 5, LEASE)
    assert second.id == f"{2:032x}"


def test_the_test_database_is_private() -> None:
    assert "offload_test_" in session_database()


def _terminate(url: str, query_like: str) -> int:
    """pg_terminate_backend every connection to the test database whose last query matches."""
    conninfo, _ = split_url(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND query LIKE %s",
            (query_like,),
        ).fetchall()
    return len(rows)


async def test_a_killed_listener_reconnects_and_wakes_waiters(url: str) -> None:
    store = PostgresBackend.from_url(url)
    other = PostgresBackend.from_url(url)
    await store.open()
    await other.open()
    try:
        await store.wait_for_work(["default"], timeout=0.3)  # the listener is up
        channel = store.names.channel
        assert _terminate(url, f'LISTEN "{channel}"') == 1
        waiting = asyncio.create_task(store.wait_for_work(["default"], timeout=30.0))
        await asyncio.sleep(1.0)  # past the reconnect pause: listening again
        await other.submit([job(1)])
        await asyncio.wait_for(waiting, 5.0)
    finally:
        await store.close()
        await other.close()


async def test_a_killed_pool_connection_costs_at_most_one_failed_call(
    backend: PostgresBackend,
) -> None:
    await backend.submit([job(1)])
    assert _terminate(url=backend.url, query_like="%") >= 1
    failures = 0
    for _ in range(3):
        try:
            assert await backend.get(f"{1:032x}") is not None
        except BackendUnavailable:
            failures += 1
    assert failures <= 1
