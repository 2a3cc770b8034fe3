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
    #: Run with a generic plan where :func:`run_alone` runs it (see there): for the hot
    #: statements of a drain, whose custom planning cost as much as their execution.
    generic: bool = False


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


#: Sent in the same round trip before a :attr:`Query.generic` statement: the setting lasts
#: until that statement's implicit transaction ends (commit or rollback), nothing after it.
GENERIC = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"


async def run_async(
    conn: psycopg.AsyncConnection[Any], plan: Plan[T], *, generic: bool = False
) -> T:
    """Run ``plan`` on an async connection, inside whatever transaction the caller opened.

    ``generic`` (autocommit only, see :func:`run_alone`): a :attr:`Query.generic` statement
    goes in a pipeline behind :data:`GENERIC`."""
    try:
        query = next(plan)
        async with conn.cursor(row_factory=tuple_row) as cur:
            while True:
                rows: Rows = []
                if generic and query.generic and not query.many:
                    rows = await _generic(conn, cur, query)
                elif query.many:
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


async def _generic(
    conn: psycopg.AsyncConnection[Any], cur: psycopg.AsyncCursor[Any], query: Query
) -> Rows:
    """``query`` as a prepared statement with a generic plan, in one round trip: the setting
    and the statement share one implicit transaction (a pipeline has one Sync), so the
    setting ends with it, committed or rolled back. PostgreSQL's default (``auto``) planned
    the claim afresh each time (~1 ms of the server's CPU, as much as running it): a custom
    plan, as the generic one's estimated cost was higher; the plans are the same shape."""
    async with conn.pipeline():
        await conn.execute(GENERIC)
        await cur.execute(query.sql, query.params, prepare=True)
    return await cur.fetchall() if cur.description is not None else []


async def run_alone(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """Run ``plan`` on an idle connection in autocommit: each statement is a transaction of
    its own (no BEGIN and COMMIT round trips) unless the plan yields ``BEGIN`` and ``COMMIT``
    itself; a transaction the plan left open when it failed is rolled back. The connection's
    autocommit setting is restored. Its :attr:`Query.generic` statements run with a generic
    plan (see :func:`_generic`) unless the connection never prepares statements (a pooler
    that cannot keep them): then every execution is planned anyway."""
    was = conn.autocommit
    await conn.set_autocommit(True)
    try:
        return await run_async(conn, plan, generic=conn.prepare_threshold is not None)
    except BaseException:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()
        raise
    finally:
        if not conn.closed:
            await conn.set_autocommit(was)
