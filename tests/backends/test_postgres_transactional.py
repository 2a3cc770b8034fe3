"""Transactional enqueue on PostgreSQL: ``task.options(connection=...)`` and
``task.options(session=...)`` store a job inside the caller's own transaction, on a real server.

A committed job runs once on a real worker; a rolled-back one leaves no row in ``jobs`` nor
``history``; a rolled-back savepoint takes its job with it; and the caller's connection is left
as the caller had it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import offload
from offload.backends.postgres.backend import split_url
from offload.errors import ConfigurationError, IdempotencyConflict
from pgkit import postgres_schema_url

sqlalchemy = pytest.importorskip("sqlalchemy")
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402


@pytest.fixture
def url() -> str:
    return postgres_schema_url()


@pytest.fixture
def app(url: str) -> Iterator[offload.App]:
    app = offload.App(url)
    yield app
    app.close()


def _conninfo(url: str) -> str:
    return split_url(url)[0]


def _schema(url: str) -> str:
    return split_url(url)[1]["schema"]


def _sa_url(url: str) -> str:
    return _conninfo(url).replace("postgresql://", "postgresql+psycopg://", 1)


def _rows(url: str) -> tuple[int, int]:
    """Rows in the schema's jobs and history tables, read on a connection of their own."""
    s = _schema(url)
    with psycopg.connect(_conninfo(url)) as conn:
        jobs = conn.execute(f'SELECT count(*) FROM "{s}".jobs').fetchone()  # type: ignore[arg-type]
        history = conn.execute(f'SELECT count(*) FROM "{s}".history').fetchone()  # type: ignore[arg-type]
    assert jobs is not None
    assert history is not None
    return jobs[0], history[0]


def _state(conn: psycopg.Connection[Any]) -> tuple[object, ...]:
    return (
        conn.autocommit,
        conn.info.transaction_status,
        conn.isolation_level,
        conn.row_factory,
        conn.read_only,
        conn.deferrable,
    )


def _declare(app: offload.App) -> tuple[Any, list[str]]:
    ran: list[str] = []

    @app.task(name="mail")
    async def mail(order: str) -> str:
        ran.append(order)
        return f"sent {order}"

    return mail, ran


async def _run_once(app: offload.App, job: offload.Job, ran: list[str], order: str) -> None:
    worker = offload.Worker(app)
    task = asyncio.create_task(worker.run())
    try:
        assert await job.aresult(timeout=20) == f"sent {order}"
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)
    await job.arefresh()
    assert ran == [order]
    assert job.attempts == 1


def test_a_committed_job_runs_once_and_only_after_the_commit(app: offload.App, url: str) -> None:
    mail, ran = _declare(app)
    with psycopg.connect(_conninfo(url)) as conn:
        conn.execute("SELECT 1")  # the caller's transaction is open
        job = mail.options(connection=conn).submit("o-1")
        assert _rows(url) == (0, 0)  # invisible to everyone else until the commit
        conn.commit()
    assert _rows(url) == (1, 1)
    asyncio.run(_run_once(app, job, ran, "o-1"))


def test_a_rolled_back_job_leaves_no_trace(app: offload.App, url: str) -> None:
    mail, _ = _declare(app)
    with psycopg.connect(_conninfo(url)) as conn:
        mail.options(connection=conn).submit("o-1")  # opens the transaction itself
        mail.options(connection=conn, idempotency_key="k").submit("o-2")
        conn.rollback()
    assert _rows(url) == (0, 0)


def test_a_rolled_back_savepoint_takes_its_job_with_it(app: offload.App, url: str) -> None:
    mail, _ = _declare(app)
    with psycopg.connect(_conninfo(url), autocommit=True) as conn, conn.transaction():
        kept = mail.options(connection=conn).submit("kept")
        with conn.transaction():  # a savepoint
            mail.options(connection=conn).submit("dropped")
            raise psycopg.Rollback  # back to the savepoint, silently
    assert _rows(url) == (1, 1)
    assert kept.record.args == ["kept"]


@pytest.mark.parametrize("isolation", [None, psycopg.IsolationLevel.SERIALIZABLE])
def test_the_callers_connection_is_left_as_it_was(
    app: offload.App, url: str, isolation: psycopg.IsolationLevel | None
) -> None:
    mail, _ = _declare(app)
    with psycopg.connect(_conninfo(url), row_factory=dict_row) as conn:
        conn.isolation_level = isolation
        conn.execute("SELECT 1")
        before = _state(conn)
        job = mail.options(connection=conn).submit("o-1")
        assert _state(conn) == before
        assert conn.execute("SELECT count(*) AS n FROM pg_cursors").fetchone() == {"n": 0}
        assert conn.execute("SELECT 2 AS two").fetchone() == {"two": 2}  # still usable, ours
        conn.commit()
    assert job.status.value == "queued"
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        with conn.transaction():
            before = _state(conn)
            mail.options(connection=conn).submit("o-2")
            assert _state(conn) == before
        assert _state(conn)[:2] == (True, psycopg.pq.TransactionStatus.IDLE)
    assert _rows(url) == (2, 2)


def test_idempotency_keys_hold_inside_the_transaction(app: offload.App, url: str) -> None:
    mail, _ = _declare(app)
    with psycopg.connect(_conninfo(url)) as conn:
        first = mail.options(connection=conn, idempotency_key="order-1").submit("o-1")
        again = mail.options(connection=conn, idempotency_key="order-1").submit("o-1")
        assert again.id == first.id
        with pytest.raises(IdempotencyConflict):
            mail.options(connection=conn, idempotency_key="order-1").submit("o-2")
        conn.commit()
    assert _rows(url) == (1, 1)
    assert mail.options(idempotency_key="order-1").submit("o-1").id == first.id


async def test_an_async_connection_commits_and_rolls_back(app: offload.App, url: str) -> None:
    mail, ran = _declare(app)
    async with await psycopg.AsyncConnection.connect(_conninfo(url)) as conn:
        await mail.options(connection=conn).asubmit("gone")
        await conn.rollback()
        before = (conn.autocommit, conn.info.transaction_status, conn.row_factory)
        job = await mail.options(connection=conn).asubmit("o-1")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        await conn.commit()
        assert (conn.autocommit, conn.info.transaction_status, conn.row_factory) == before
    assert await asyncio.to_thread(_rows, url) == (1, 1)
    await _run_once(app, job, ran, "o-1")
    await app.aclose()


def test_a_sqlalchemy_session_commits_rolls_back_and_nests(app: offload.App, url: str) -> None:
    mail, ran = _declare(app)
    engine = sqlalchemy.create_engine(_sa_url(url))
    try:
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
            mail.options(session=session).submit("gone")
            session.rollback()
            session.execute(text("SELECT 1"))  # the order's insert, say
            raw = session.connection().connection.driver_connection
            before = _state(raw)
            kept = mail.options(session=session).submit("o-1")
            assert _state(raw) == before
            nested = session.begin_nested()
            mail.options(session=session).submit("dropped")
            nested.rollback()
            assert _rows(url) == (0, 0)
            session.commit()
    finally:
        engine.dispose()
    assert _rows(url) == (1, 1)
    asyncio.run(_run_once(app, kept, ran, "o-1"))


async def test_an_async_sqlalchemy_session(app: offload.App, url: str) -> None:
    mail, ran = _declare(app)
    engine = create_async_engine(_sa_url(url))
    try:
        async with AsyncSession(engine) as session:
            await mail.options(session=session).asubmit("gone")
            await session.rollback()
            job = await mail.options(session=session).asubmit("o-1")
            async with session.begin_nested():
                await mail.options(session=session).asubmit("also")
            await session.commit()
    finally:
        await engine.dispose()
    assert await asyncio.to_thread(_rows, url) == (2, 2)
    ran.clear()
    worker = offload.Worker(app)
    task = asyncio.create_task(worker.run())
    try:
        assert await job.aresult(timeout=20) == "sent o-1"
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)
    await app.aclose()


def test_options_are_checked(app: offload.App, url: str, tmp_path: Any) -> None:
    mail, _ = _declare(app)
    with pytest.raises(ConfigurationError, match="not both"):
        mail.options(connection=object(), session=object())
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        with pytest.raises(ConfigurationError, match="autocommit"):
            mail.options(connection=conn).submit("o-1")
        with pytest.raises(ConfigurationError, match=r"\.submit\(\)"):
            asyncio.run(mail.options(connection=conn).asubmit("o-1"))
    with pytest.raises(ConfigurationError, match="psycopg"):
        mail.options(connection=object()).submit("o-1")
    with pytest.raises(ConfigurationError, match="workflow"):
        mail.options(connection=object()).s("o-1")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with (
        Session(engine) as session,
        pytest.raises(ConfigurationError, match=r"postgresql\+psycopg"),
    ):
        mail.options(session=session).submit("o-1")
    engine.dispose()
    with offload.App(f"sqlite:///{tmp_path / 'jobs.db'}") as other:
        elsewhere = other.task(name="mail")(lambda order: order)
        with (
            psycopg.connect(_conninfo(url)) as conn,
            pytest.raises(ConfigurationError, match="must be postgresql"),
        ):
            elsewhere.options(connection=conn).submit("o-1")
    app.ping()  # the schema exists: nothing was stored in it
    assert _rows(url) == (0, 0)
