"""``postgresql://user:pass@host/db``: the backend for apps that already run PostgreSQL.

Claims lock rows with ``FOR UPDATE SKIP LOCKED`` (see :mod:`.claim`), so any number of worker
processes on any number of machines share one database without waiting for each other. Times
come from the server's clock (``clock_timestamp()``), never a worker's. Idle workers wake on
``LISTEN/NOTIFY`` (see :mod:`.watch`). Tables live in their own schema with versioned
migrations applied at :meth:`PostgresBackend.open` under an advisory lock (see :mod:`.schema`).

URL options (the rest of the query string goes to libpq, e.g. ``sslmode``):
``schema`` (default ``offload``), ``notify`` (``false`` for PgBouncer transaction pooling:
poll every ``poll_interval`` seconds instead), ``prepare`` (``false``: no server-side prepared
statements, for poolers that cannot keep them), ``pool_size`` (default 10 connections).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
import psycopg
import psycopg_pool

from offload.backends._common import check_retry_in, parse_url
from offload.backends.base import DEFAULT_MAX_LOSSES
from offload.backends.postgres import reads, schema, tx
from offload.backends.postgres.claim import claim_plan
from offload.backends.postgres.migrate import migrate
from offload.backends.postgres.plan import Plan, Query, clock_plan, run_alone, run_async
from offload.backends.postgres.single import one_statement
from offload.backends.postgres.submit import Names, submit_plan, wake_plan
from offload.backends.postgres.watch import Listener
from offload.core.clock import Clock
from offload.core.job import (
    JobFilter,
    JobRecord,
    Lease,
    NewJob,
    Page,
    QueueStats,
    RenewResult,
    Transition,
    WorkerInfo,
)
from offload.core.retention import RetentionPolicy
from offload.core.states import Reason, State
from offload.errors import BackendError, BackendUnavailable, ConfigurationError, OffloadError

T = TypeVar("T")
log = logging.getLogger("offload.backends.postgres")
OPTIONS = ("schema", "notify", "prepare", "pool_size", "poll_interval")
#: Times a transaction that lost a deadlock or a serialization conflict is tried again.
RETRIES = 5
RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The libpq connection URL (our options removed) and our options."""
    parsed = parse_url(url)
    parts = urlsplit(url)
    ours = {k: v for k, v in parsed.options.items() if k in OPTIONS}
    rest = {k: v for k, v in parsed.options.items() if k not in OPTIONS}
    scheme = "postgresql" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    conninfo = urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), ""))
    return conninfo, ours


def _flag(value: str, name: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"PostgreSQL URL option {name}={value!r} must be true or false")


class PostgresBackend:
    """Jobs in one PostgreSQL schema."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema_name: str = schema.DEFAULT_SCHEMA,
        notify: bool = True,
        prepare: bool = True,
        pool_size: int = 10,
        poll_interval: float = 0.5,
        clock: Clock | None = None,
        max_losses: int = DEFAULT_MAX_LOSSES,
        url: str | None = None,
    ) -> None:
        schema.check_schema_name(schema_name)
        if pool_size < 1:
            raise ConfigurationError(f"pool_size must be at least 1, not {pool_size}")
        self.url = url or conninfo
        self.conninfo = conninfo
        self.schema_name = schema_name
        self.clock = clock  # None: the server's clock (production); a ManualClock in tests
        self.max_losses = max_losses
        channel = f"offload:{schema_name}" if notify else None
        self.names = Names(schema_name, channel)
        self._pool_size = pool_size
        # None: never prepare statements (for poolers that cannot keep them, e.g. PgBouncer
        # in transaction mode before 1.21); psycopg's default prepares after 5 executions.
        self._connect_kwargs: dict[str, Any] = {"autocommit": False}
        if not prepare:
            self._connect_kwargs["prepare_threshold"] = None
        self._pool: psycopg_pool.AsyncConnectionPool | None = None
        self._pool_check: asyncio.Task[None] | None = None
        self._wake_lock = asyncio.Lock()
        self._wake_wanted = self._wake_sent = 0  # submits that asked for a NOTIFY; covered
        self._listener = Listener(conninfo, channel, poll_interval)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> PostgresBackend:
        conninfo, options = split_url(url)
        try:
            return cls(
                conninfo,
                schema_name=options.get("schema", schema.DEFAULT_SCHEMA),
                notify=_flag(options.get("notify", "true"), "notify"),
                prepare=_flag(options.get("prepare", "true"), "prepare"),
                pool_size=int(options.get("pool_size", 10)),
                poll_interval=float(options.get("poll_interval", 0.5)),
                clock=clock,
                url=url,
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid PostgreSQL URL option in {url!r}: {exc}") from None

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = psycopg_pool.AsyncConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            kwargs=self._connect_kwargs,
        )
        try:
            await pool.open(wait=True, timeout=10.0)
            async with pool.connection() as conn:
                await migrate(conn, self.schema_name)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            await pool.close()
            raise BackendUnavailable(f"cannot open PostgreSQL backend: {exc}") from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        check, self._pool_check = self._pool_check, None
        if check is not None:
            check.cancel()
            await asyncio.gather(check, return_exceptions=True)
        await self._listener.close()
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        await self._run(lambda now: _select_one())

    async def now(self) -> float:
        return await self._run(lambda now: _just(now))

    def _fixed_now(self) -> float | None:
        return None if self.clock is None else self.clock.now()

    async def _run(self, body: Callable[[float], Plan[T]], *, durable: bool = True) -> T:
        """Run ``body`` (given the backend's now) in one transaction of its own; a worker's
        own bookkeeping is not ``durable`` (see :func:`.plan.clock_plan`)."""
        return await self._run_plan(lambda: _timed(self._fixed_now(), body, not durable))

    async def _run_plan(self, make: Callable[[], Plan[T]], *, alone: bool = False) -> T:
        """``alone``: run in autocommit (see :func:`.plan.run_alone`), not in a transaction."""
        pool = self._pool
        if pool is None:
            raise BackendError("the PostgreSQL backend is closed; open it before use")
        for attempt in range(RETRIES + 1):
            try:
                async with pool.connection() as conn:
                    if alone:
                        return await run_alone(conn, make())
                    async with conn.transaction():
                        return await run_async(conn, make())
            except RETRYABLE:
                if attempt == RETRIES:
                    raise BackendUnavailable("PostgreSQL kept aborting the transaction") from None
                await asyncio.sleep(0.001 * 2**attempt)
            except OffloadError:
                raise
            except psycopg_pool.PoolTimeout as exc:
                raise BackendUnavailable(f"no PostgreSQL connection available: {exc}") from None
            except psycopg.OperationalError as exc:
                self._check_pool(pool)
                raise BackendUnavailable(f"PostgreSQL is unavailable: {exc}") from None
            except psycopg.Error as exc:
                raise BackendError(f"PostgreSQL error: {exc}") from None
        raise AssertionError("unreachable")

    def _check_pool(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        """Test the pool's idle connections in the background (one check at a time): a
        terminated session or a restarted server leaves every idle connection dead, and the
        pool finds that out only on use, one failed call (and one retry pause) per connection."""
        if self._pool_check is None or self._pool_check.done():
            self._pool_check = asyncio.get_running_loop().create_task(_check(pool))

    # -- writes --------------------------------------------------------------------------------
    async def submit(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        items = list(jobs)
        stored = await self._run_plan(
            lambda: submit_plan(self.names, self._fixed_now(), items, wake=False),
            alone=one_statement(items),  # one statement: its own transaction, no BEGIN/COMMIT
        )
        await self._wake()
        return stored

    async def _wake(self) -> None:
        """NOTIFY idle workers after a submit's commit, not inside it: PostgreSQL holds one
        lock over every committing NOTIFY transaction's flush, which made concurrent submits
        commit one at a time (476 against 2,089 commits/s with 10 connections). Concurrent
        submits share one NOTIFY: one sent after a submit's commit covers it."""
        if self.names.channel is None:
            return  # poll-only mode
        self._wake_wanted += 1
        wanted = self._wake_wanted
        async with self._wake_lock:
            if self._wake_sent >= wanted:
                return
            upto = self._wake_wanted
            try:
                await self._run_plan(lambda: wake_plan(self.names), alone=True)
            except BackendError as exc:  # stored already: idle workers find it by polling
                log.warning("wake-up after a submit failed (%s); workers will poll", exc)
            self._wake_sent = upto

    async def claim(
        self,
        worker_id: str,
        queues: Mapping[str, int],
        limit: int,
        lease_seconds: float,
        *,
        idle: bool = False,
    ) -> list[JobRecord]:
        room = {q: n for q, n in queues.items() if n > 0}
        if limit <= 0 or not room:
            return []
        return await self._run_plan(
            lambda: claim_plan(
                self.names, self._fixed_now(), worker_id, room, limit, lease_seconds, idle
            ),
            alone=True,
        )

    async def renew(
        self, worker_id: str, leases: Sequence[Lease], lease_seconds: float | None
    ) -> RenewResult:
        items = list(leases)
        if not items:
            return RenewResult(frozenset(), frozenset())
        return await self._run(
            lambda now: tx.renew(self.names, now, items, lease_seconds), durable=False
        )

    async def progress(self, lease: Lease, fraction: float | None, message: str | None) -> None:
        await self._run(
            lambda now: tx.progress(self.names, now, lease, fraction, message), durable=False
        )

    async def complete(self, lease: Lease, result: Any, *, then: Sequence[NewJob] = ()) -> None:
        params = {"result": orjson.dumps(result), "error": None}
        if not then:
            await self._move(lease, State.SUCCEEDED, Reason.SUCCEEDED, tx.FINISH, params)
            return
        items = list(then)
        await self._run(
            lambda now: tx.succeed_then(self.names, now, lease, tx.FINISH, params, items)
        )

    async def fail(
        self,
        lease: Lease,
        error: dict[str, Any],
        *,
        retry_in: float | None = None,
        reason: Reason = Reason.FAILED,
    ) -> None:
        check_retry_in(retry_in)
        detail = error.get("message")
        encoded = {"result": None, "error": orjson.dumps(error)}
        if retry_in is None:
            await self._move(lease, State.FAILED, reason, tx.FINISH, encoded, detail)
            return
        target = State.SCHEDULED if retry_in > 0 else State.QUEUED
        sets = (
            "run_at = %(now)s + %(delay)s, error = %(error)s, worker_id = NULL, lease_until = NULL"
        )
        await self._move(lease, target, Reason.RETRY, sets, {**encoded, "delay": retry_in}, detail)

    async def mark_cancelled(self, lease: Lease, error: dict[str, Any] | None = None) -> None:
        encoded = {"result": None, "error": None if error is None else orjson.dumps(error)}
        detail = error.get("message") if error else None
        await self._move(lease, State.CANCELLED, Reason.CANCELLED, tx.FINISH, encoded, detail)

    async def release(self, lease: Lease) -> None:
        sets = "attempts = attempts - 1, run_at = %(now)s, worker_id = NULL, lease_until = NULL"
        await self._move(lease, State.QUEUED, Reason.RELEASED, sets, {})

    async def _move(
        self,
        lease: Lease,
        target: State,
        reason: Reason,
        sets: str,
        params: dict[str, Any],
        detail: str | None = None,
    ) -> None:
        await self._run(
            lambda now: tx.move(self.names, now, lease, target, reason, sets, params, detail),
            durable=False,
        )

    async def cancel(self, job_id: str) -> JobRecord:
        return await self._run(lambda now: tx.cancel(self.names, now, job_id))

    async def reap(self, limit: int = 100) -> int:
        return await self._run(
            lambda now: tx.reap(self.names, now, limit, self.max_losses), durable=False
        )

    async def reclaim_dead(self, grace: float, limit: int = 100) -> int:
        return await self._run(
            lambda now: tx.reclaim_dead(self.names, now, grace, limit, self.max_losses),
            durable=False,
        )

    async def prune(self, limit: int = 500, policy: RetentionPolicy | None = None) -> int:
        return await self._run(lambda now: tx.prune(self.names, now, limit, policy), durable=False)

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        return await self._run_plan(lambda: tx.fetch(self.names, job_id))

    async def list_jobs(self, flt: JobFilter) -> Page:
        return await self._run_plan(lambda: reads.list_jobs(self.names, flt))

    async def history(self, job_id: str) -> list[Transition]:
        return await self._run_plan(lambda: reads.history(self.names, job_id))

    async def stats(self) -> list[QueueStats]:
        return await self._run(lambda now: reads.stats(self.names, now))

    async def heartbeat(self, worker: WorkerInfo, *, ttl: float) -> None:
        await self._run(lambda now: tx.heartbeat(self.names, now, worker, ttl), durable=False)

    async def workers(self) -> list[WorkerInfo]:
        return await self._run(lambda now: tx.live_workers(self.names, now))

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Sleep until a notification (or, without one, a poll) says work may be ready, a
        scheduled job falls due, or ``timeout`` passes; at once if work is ready."""
        names = list(queues)

        async def probe() -> float:
            return await self._run(lambda now: tx.probe(self.names, now, names, timeout))

        await self._listener.wait(probe, timeout)


def _timed(fixed: float | None, body: Callable[[float], Plan[T]], relaxed: bool) -> Plan[T]:
    now = yield from clock_plan(fixed, relaxed=relaxed)
    return (yield from body(now))


async def _check(pool: psycopg_pool.AsyncConnectionPool) -> None:
    try:
        await asyncio.wait_for(pool.check(), 5.0)
    except (TimeoutError, psycopg.Error, psycopg_pool.PoolTimeout):
        pass  # still down: the next failure checks again


def _just(value: T) -> Plan[T]:
    yield from ()  # a plan that asks for nothing
    return value


def _select_one() -> Plan[None]:
    yield Query("SELECT 1")
