"""The drain's hot statements (the claim, the moves to a final state) run with a generic plan:
the setting travels with the statement in one round trip and never outlives it, committed or
rolled back; a backend that never prepares statements sends them plainly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from offload.backends.postgres import PostgresBackend
from offload.backends.postgres.plan import Plan, Query, run_alone
from offload.core.job import Lease, NewJob
from offload.errors import LeaseLost
from pgkit import postgres_schema_url

LEASE = 30.0
MODE = "SELECT current_setting('plan_cache_mode')"


def job(n: int) -> NewJob:
    return NewJob(id=f"{n:032x}", task="tasks.echo", args=[n], kwargs={})


@pytest.fixture
async def backend() -> AsyncIterator[PostgresBackend]:
    store = PostgresBackend.from_url(postgres_schema_url() + "&pool_size=1")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _mode(store: PostgresBackend) -> str:
    assert store._pool is not None
    async with store._pool.connection() as conn:
        row = await (await conn.execute(MODE)).fetchone()
        assert row is not None
        return str(row[0])


def _modes(fail: bool = False) -> Plan[tuple[str, str]]:
    inside = yield Query(MODE, generic=True)
    if fail:
        yield Query("SELECT 1 / 0", generic=True)
    after = yield Query(MODE)
    return str(inside[0][0]), str(after[0][0])


async def test_the_setting_lasts_one_statement(backend: PostgresBackend) -> None:
    assert backend._pool is not None
    async with backend._pool.connection() as conn:
        assert await run_alone(conn, _modes()) == ("force_generic_plan", "auto")
        with pytest.raises(psycopg.errors.DivisionByZero):
            await run_alone(conn, _modes(fail=True))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert not conn.autocommit  # handed back as the pool gave it
    assert await _mode(backend) == "auto"


async def test_without_prepared_statements_nothing_is_set() -> None:
    store = PostgresBackend.from_url(postgres_schema_url() + "&pool_size=1&prepare=false")
    await store.open()
    try:
        assert store._pool is not None
        async with store._pool.connection() as conn:
            assert await run_alone(conn, _modes()) == ("auto", "auto")
    finally:
        await store.close()


async def test_claims_and_finishes_leave_the_connection_as_it_was(
    backend: PostgresBackend,
) -> None:
    await backend.submit([job(n) for n in range(30)])
    for _ in range(3):  # past psycopg's prepare threshold, on the one pooled connection
        claimed = await backend.claim("w1", {"default": 10}, 10, LEASE)
        assert len(claimed) == 10
        for record in claimed:
            await backend.complete(Lease(record.id, record.token), record.args[0])
        assert await _mode(backend) == "auto"
    done = await backend.get(f"{29:032x}")
    assert done is not None
    assert done.status.value == "succeeded"
    assert done.result == 29
    stale = Lease(f"{0:032x}", 1)
    with pytest.raises(LeaseLost):
        await backend.complete(stale, None)  # finished already: a generic statement, no rows
    assert await _mode(backend) == "auto"
