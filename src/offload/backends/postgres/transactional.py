"""Jobs stored inside the caller's own transaction: on a psycopg connection or a SQLAlchemy
session the caller holds.

The insert is the backend's own :func:`.submit.submit_plan`, run on the caller's connection.
The usual submit (one job, no idempotency key) is one statement, so one round trip
(:func:`.single.submit_one`: the server's clock, the job, its history row and ``pg_notify``); a
job with an idempotency key locks the key before it reads it, which takes statements of their
own. Either way the job exists only if the caller's transaction commits, and its
``NOTIFY`` is delivered by PostgreSQL at that commit, so no worker sees it before. Nothing else
of the connection is touched: no commit, no rollback, no savepoint, no setting; the cursor is
closed before this returns and reads plain tuples whatever the connection's row factory.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from offload.backends.postgres.plan import run_async, run_sync
from offload.backends.postgres.submit import Names, submit_plan
from offload.core.job import JobRecord, NewJob
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
        return run_sync(conn, submit_plan(names, fixed_now, jobs))
    except psycopg.OperationalError as exc:
        raise BackendUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise BackendError(f"PostgreSQL error in the caller's transaction: {exc}") from exc


async def submit_async(
    conn: psycopg.AsyncConnection[Any], names: Names, fixed_now: float | None, jobs: list[NewJob]
) -> list[JobRecord]:
    """Store ``jobs`` in ``conn``'s transaction (committed, or not, by the caller)."""
    try:
        return await run_async(conn, submit_plan(names, fixed_now, jobs))
    except psycopg.OperationalError as exc:
        raise BackendUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
    except psycopg.Error as exc:
        raise BackendError(f"PostgreSQL error in the caller's transaction: {exc}") from exc
