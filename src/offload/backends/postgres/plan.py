"""One implementation, two faces: transactions written once as plans, run by a sync or an
async driver.

A *plan* is a generator that does no I/O: it yields the statements it needs, one at a time, and
is sent back each statement's rows (an empty list for a statement that returns none). The
backend runs its plans on its own pool with :func:`run_async`; a caller's own connection (sync
or async, inside the caller's transaction) can run the same plan with :func:`run_sync` or
:func:`run_async`, so a job insert can join the caller's transaction unchanged. The plan's
cursor reads plain tuples whatever row factory the caller's connection has.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

T = TypeVar("T")
Rows = list[tuple[Any, ...]]


class Query(NamedTuple):
    sql: str
    params: Sequence[Any] | Mapping[str, Any] | None = None
    many: bool = False  # executemany over ``params`` (a sequence of parameter rows)


Plan = Generator[Query, Rows, T]

#: The server's clock in epoch seconds: deadlines never depend on a worker's clock.
SERVER_NOW = Query("SELECT extract(epoch FROM clock_timestamp())::double precision")


#: The same, and this transaction's commit does not wait for its WAL to reach the disk.
RELAXED_NOW = Query(
    "SELECT extract(epoch FROM clock_timestamp())::double precision, "
    "set_config('synchronous_commit', 'off', true)"
)


def clock_plan(fixed: float | None, *, relaxed: bool = False) -> Plan[float]:
    """``fixed`` when the backend runs on a given clock (tests), else the server's clock.

    ``relaxed``: the transaction commits without waiting for its flush (a worker's own
    bookkeeping: renewals, outcomes, reaping, pruning). A crash of the server can then only
    roll such a commit back, so that the job runs again. Submits, cancels and claims stay
    durable, and each durable commit flushes every relaxed one before it (the WAL is one
    sequence), so a claim's fencing token is never handed out twice.
    """
    if relaxed:
        rows = yield RELAXED_NOW
        return fixed if fixed is not None else float(rows[0][0])
    if fixed is not None:
        return fixed
    rows = yield SERVER_NOW
    return float(rows[0][0])


async def run_async(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """Run ``plan`` on an async connection, inside whatever transaction the caller opened."""
    try:
        query = next(plan)
        async with conn.cursor(row_factory=tuple_row) as cur:
            while True:
                rows: Rows = []
                if query.many:
                    await cur.executemany(query.sql, query.params or [])
                else:
                    await cur.execute(query.sql, query.params)
                    if cur.description is not None:
                        rows = await cur.fetchall()
                query = plan.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def run_sync(conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
    """Run ``plan`` on a sync connection, inside whatever transaction the caller opened."""
    try:
        query = next(plan)
        with conn.cursor(row_factory=tuple_row) as cur:
            while True:
                rows: Rows = []
                if query.many:
                    cur.executemany(query.sql, query.params or [])
                else:
                    cur.execute(query.sql, query.params)
                    if cur.description is not None:
                        rows = cur.fetchall()
                query = plan.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_alone(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """Run ``plan`` on an idle connection in autocommit: each statement is a transaction of
    its own (no BEGIN and COMMIT round trips) unless the plan yields ``BEGIN`` and ``COMMIT``
    itself; a transaction the plan left open when it failed is rolled back. The connection's
    autocommit setting is restored."""
    was = conn.autocommit
    await conn.set_autocommit(True)
    try:
        return await run_async(conn, plan)
    except BaseException:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()
        raise
    finally:
        if not conn.closed:
            await conn.set_autocommit(was)
