"""Jobs stored inside the caller's own transaction: on a psycopg connection or a SQLAlchemy
session the caller holds.

The usual submit (one job, no idempotency key) is one statement, so one round trip on the
caller's connection (:func:`one_statement`): it reads the server's clock, inserts the job and its
history row and calls ``pg_notify``. A job with an idempotency key takes the backend's own
:func:`.submit.submit_plan` (it locks the key before it reads it, which takes statements of
their own). Either way the job exists only if the caller's transaction commits, and its
``NOTIFY`` is delivered by PostgreSQL at that commit, so no worker sees it before. Nothing else
of the connection is touched: no commit, no rollback, no savepoint, no setting; the cursor is
closed before this returns and reads plain tuples whatever the connection's row factory.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
import psycopg
from psycopg.pq import TransactionStatus

from offload.backends._common import check_new_job, check_transition, submitted_record
from offload.backends.postgres import schema
from offload.backends.postgres.plan import Plan, Query, run_async, run_sync
from offload.backends.postgres.submit import NO_LIMITS, Names, submit_plan
from offload.core.job import JobRecord, NewJob
from offload.core.states import Reason, State
from offload.errors import BackendError, BackendUnavailable, ConfigurationError

DRIVER_HINT = (
    "transactional submits need SQLAlchemy's psycopg 3 driver (postgresql+psycopg://...); "
    "with another driver, pass a psycopg connection as connection= instead"
)


def session_connection(session: Any) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy ``Session``'s transaction (begun if need be)."""
    from sqlalchemy.ext.asyncio import AsyncSession

    if isinstance(session, AsyncSession):
        raise ConfigurationError("an AsyncSession needs `await task.options(...).asubmit()`")
    _check_driver(session.get_bind().dialect)
    raw = session.connection().connection.driver_connection
    return sync_connection(raw)


async def async_session_connection(session: Any) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under a SQLAlchemy ``AsyncSession``'s transaction."""
    from sqlalchemy.ext.asyncio import AsyncSession

    if not isinstance(session, AsyncSession):
        raise ConfigurationError("a sync Session needs `task.options(...).submit()`")
    _check_driver(session.sync_session.get_bind().dialect)
    sa_conn = await session.connection()
    raw = await sa_conn.get_raw_connection()
    return async_connection(raw.driver_connection)


def _check_driver(dialect: Any) -> None:
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        raise ConfigurationError(
            f"the session's engine uses {dialect.name}+{dialect.driver}: {DRIVER_HINT}"
        )


def sync_connection(conn: Any) -> psycopg.Connection[Any]:
    if isinstance(conn, psycopg.AsyncConnection):
        raise ConfigurationError("a psycopg AsyncConnection needs `await ...asubmit()`")
    if not isinstance(conn, psycopg.Connection):
        raise ConfigurationError(
            f"connection= takes a psycopg (3) Connection, not {type(conn).__name__}; "
            "for SQLAlchemy, pass session="
        )
    _check_open(conn.autocommit, conn.info.transaction_status)
    return conn


def async_connection(conn: Any) -> psycopg.AsyncConnection[Any]:
    if isinstance(conn, psycopg.Connection):
        raise ConfigurationError("a sync psycopg Connection needs `task.options(...).submit()`")
    if not isinstance(conn, psycopg.AsyncConnection):
        raise ConfigurationError(
            f"connection= takes a psycopg (3) AsyncConnection, not {type(conn).__name__}; "
            "for SQLAlchemy, pass session="
        )
    _check_open(conn.autocommit, conn.info.transaction_status)
    return conn


def _check_open(autocommit: bool, status: TransactionStatus) -> None:
    """A job must join a transaction: one is open, or (autocommit off) the next statement
    opens one that the caller commits."""
    if status == TransactionStatus.INERROR:
        raise ConfigurationError("the connection's transaction has failed: roll it back first")
    if status not in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
        raise ConfigurationError(f"the connection is not usable (status {status.name})")
    if autocommit and status == TransactionStatus.IDLE:
        raise ConfigurationError(
            "the connection is in autocommit mode with no transaction open: the job would "
            "commit on its own; submit inside `with conn.transaction():`"
        )


def submit_sync(
    conn: psycopg.Connection[Any], names: Names, fixed_now: float | None, jobs: list[NewJob]
) -> list[JobRecord]:
    """Store ``jobs`` in ``conn``'s transaction (committed, or not, by the caller)."""
    try:
        return run_sync(conn, _plan(names, fixed_now, jobs))
    except psycopg.OperationalError as exc:
        raise BackendUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise BackendError(f"PostgreSQL error in the caller's transaction: {exc}") from exc


async def submit_async(
    conn: psycopg.AsyncConnection[Any], names: Names, fixed_now: float | None, jobs: list[NewJob]
) -> list[JobRecord]:
    """Store ``jobs`` in ``conn``'s transaction (committed, or not, by the caller)."""
    try:
        return await run_async(conn, _plan(names, fixed_now, jobs))
    except psycopg.OperationalError as exc:
        raise BackendUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise BackendError(f"PostgreSQL error in the caller's transaction: {exc}") from exc


def _plan(names: Names, fixed_now: float | None, jobs: list[NewJob]) -> Plan[list[JobRecord]]:
    if len(jobs) == 1 and jobs[0].idempotency_key is None:
        return one_statement(names, fixed_now, jobs[0])
    return submit_plan(names, fixed_now, jobs)


def one_statement(names: Names, fixed_now: float | None, new: NewJob) -> Plan[list[JobRecord]]:
    """Store ``new`` and wake the workers at commit in one statement (one round trip).

    The server's clock (or ``fixed_now``) is read in the statement, which also decides, as
    :func:`.submit.insert_jobs` does, the job's due time and so its status; the same checks run
    before it."""
    check_new_job(new)
    delay = max(0.0, new.delay)
    may_wait = new.run_at is not None or delay > 0
    for status in (State.QUEUED, State.SCHEDULED) if may_wait else (State.QUEUED,):
        check_transition(new.id, None, status)
    lim = new.limits or NO_LIMITS
    params = {
        "now": fixed_now,
        "channel": names.channel,
        "run_at": new.run_at,
        "delay": delay,
        "id": new.id,
        "task": new.task,
        "queue": new.queue,
        "args": orjson.dumps(new.args),
        "kwargs": orjson.dumps(new.kwargs),
        "priority": new.priority,
        "ckey": schema.encode_key(new.concurrency_key),
        "tenant": new.tenant,
        "meta": orjson.dumps(new.meta),
        "ttl": new.result_ttl,
        "limited": lim.any,
        "capped": lim.capped,
        "cap": lim.concurrency,
        "key_cap": lim.key_concurrency,
        "rate": lim.rate,
        "key_rate": lim.key_rate,
    }
    rows = yield Query(_one_sql(names.schema, names.channel is not None), params)
    status, run_at, now = rows[0]
    return [submitted_record(new, State(status), float(run_at), float(now))]


@lru_cache(maxsize=32)
def _one_sql(schema_name: str, wake: bool) -> str:
    """The statement of :func:`one_statement`: ``n``, the clock read once with the NOTIFY sent
    once (a materialized CTE computes every column it lists, used or not), then the job, then
    its history row from the job as inserted."""
    s = schema.quoted(schema_name)
    notify = ", pg_notify(%(channel)s, '')" if wake else ""
    return (
        "WITH n AS MATERIALIZED (SELECT coalesce(%(now)s::double precision, "
        f"extract(epoch FROM clock_timestamp())::double precision) AS now{notify}), "
        "clock AS (SELECT now, coalesce(%(run_at)s::double precision, "
        "now + %(delay)s::double precision) AS run_at FROM n), "
        f"job AS (INSERT INTO {s}.jobs (id, task, queue, status, args, kwargs, priority, run_at, "
        "created_at, updated_at, concurrency_key, tenant, meta, result_ttl, limited, capped, "
        "cap, key_cap, rate, key_rate) SELECT %(id)s::text, %(task)s::text, %(queue)s::text, "
        f"CASE WHEN run_at > now THEN '{State.SCHEDULED.value}' ELSE '{State.QUEUED.value}' END, "
        "%(args)s::bytea, %(kwargs)s::bytea, %(priority)s::integer, run_at, now, now, "
        "%(ckey)s::bytea, %(tenant)s::text, %(meta)s::bytea, %(ttl)s::double precision, "
        "%(limited)s::boolean, %(capped)s::boolean, %(cap)s::integer, %(key_cap)s::integer, "
        "%(rate)s::double precision, %(key_rate)s::double precision FROM clock "
        "RETURNING id, status, run_at, created_at), "
        f"history AS (INSERT INTO {s}.history ({schema.HISTORY_COLUMNS}) SELECT id, created_at, "
        f"NULL, status, '{Reason.SUBMITTED.value}', 0, 0, NULL, NULL FROM job) "
        "SELECT status, run_at, created_at FROM job"
    )
