"""``postgresql://user:pass@host/db``: the backend for apps that already run PostgreSQL.

Claims lock rows with ``FOR UPDATE SKIP LOCKED`` (see :mod:`.claim`), so any number of worker
processes on any number of machines share one database without waiting for each other. Times
come from the server's clock (``clock_timestamp()``), never a worker's. Idle workers wake on
``LISTEN/NOTIFY`` (see :mod:`.watch`). Tables live in their own schema with versioned
migrations applied at :meth:`PostgresBackend.open` under an advisory lock (see :mod:`.schema`).
Concurrent submits and moves to a final state share transactions (group commit, see
:mod:`.group`). URL options: see :mod:`.url`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import orjson
import psycopg
import psycopg_pool

from offload.backends._common import check_new_job, check_retry_in
from offload.backends.base import DEFAULT_MAX_LOSSES
from offload.backends.postgres import finish, reads, schema, tx
from offload.backends.postgres.claim import claim_plan
from offload.backends.postgres.group import Group
from offload.backends.postgres.migrate import migrate
from offload.backends.postgres.plan import Plan, Query, clock_plan, run_alone, run_async
from offload.backends.postgres.single import one_statement
from offload.backends.postgres.submit import Names, submit_many_plan, submit_plan, wake_plan
from offload.backends.postgres.url import GROUP_FLUSHES, GROUP_LIMIT, backend_options
from offload.backends.postgres.url import split_url as split_url  # its old home
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
#: Times a transaction that lost a deadlock or a serialization conflict is tried again.
RETRIES = 5
RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


class PostgresBackend:
    """Jobs in one PostgreSQL schema."""

    claim_batch = 128  # a claim is a durable commit: more jobs per claim (see base.ClaimBatch)

    def __init__(
        self,
        conninfo: str,
        *,
        schema_name: str = schema.DEFAULT_SCHEMA,
        notify: bool = True,
        prepare: bool = True,
        pool_size: int = 10,
        poll_interval: float = 0.5,
        group_limit: int = GROUP_LIMIT,
        group_flushes: int = GROUP_FLUSHES,
        clock: Clock | None = None,
        max_losses: int = DEFAULT_MAX_LOSSES,
        url: str | None = None,
    ) -> None:
        schema.check_schema_name(schema_name)
        if min(pool_size, group_limit, group_flushes) < 1:
            raise ConfigurationError("pool_size, group_limit and group_flushes must be >= 1")
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
        # Group commit (see .group): concurrent submits, and concurrent moves to a final
        # state, share transactions, at most ``group_flushes`` of each kind at a time.
        flushes = min(group_flushes, pool_size)
        self._submits: Group[list[NewJob], list[JobRecord]] = Group(
            self._submit_many,
            self._submit_one,
            flushes=flushes,
            limit=group_limit,
            weight=len,
            after=self._wake,
        )
        self._finishes: Group[tx.Finish, None] = Group(
            self._finish_many, self._finish_one, flushes=flushes, limit=group_limit, gather=True
        )

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> PostgresBackend:
        conninfo, options = split_url(url)
        return cls(conninfo, **backend_options(url, options), clock=clock, url=url)

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
        await self._submits.drain()  # groups in flight, and their wake-ups, end first
        await self._finishes.drain()
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
        return await self._run_plan(lambda: clock_plan(self._fixed_now()))

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
        if not items:
            return await self._submit_one(items)
        for new in items:  # a bad job fails its own submit before it joins a group
            check_new_job(new)
        return await self._submits(items)  # the wake-up follows the commit (see _wake)

    async def _submit_one(self, items: list[NewJob]) -> list[JobRecord]:
        return await self._run_plan(
            lambda: submit_plan(self.names, self._fixed_now(), items, wake=False),
            alone=one_statement(items),  # one statement: its own transaction, no BEGIN/COMMIT
        )

    async def _submit_many(self, submits: list[list[NewJob]]) -> list[list[JobRecord]]:
        return await self._run_plan(
            lambda: submit_many_plan(self.names, self._fixed_now(), submits)
        )

    async def _wake(self) -> None:
        """NOTIFY idle workers after a submit's commit (see .group), not inside it: PostgreSQL
        holds one lock over every committing NOTIFY transaction's flush (476 against 2,089
        commits/s on 10 connections). One NOTIFY sent after a commit covers it."""
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
        if not then:
            await self._finishes(
                tx.Finish(lease, State.SUCCEEDED, Reason.SUCCEEDED, result=orjson.dumps(result))
            )
            return
        params = {"result": orjson.dumps(result), "error": None}
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
            await self._finishes(
                tx.Finish(lease, State.FAILED, reason, None, encoded["error"], detail)
            )
            return
        target = State.SCHEDULED if retry_in > 0 else State.QUEUED
        sets = (
            "run_at = %(now)s + %(delay)s, error = %(error)s, worker_id = NULL, lease_until = NULL"
        )
        await self._move(lease, target, Reason.RETRY, sets, {**encoded, "delay": retry_in}, detail)

    async def mark_cancelled(self, lease: Lease, error: dict[str, Any] | None = None) -> None:
        encoded = None if error is None else orjson.dumps(error)
        detail = error.get("message") if error else None
        await self._finishes(
            tx.Finish(lease, State.CANCELLED, Reason.CANCELLED, None, encoded, detail)
        )

    async def _finish_one(self, item: tx.Finish) -> None:
        await self._run_plan(lambda: finish.one(self.names, self._fixed_now(), item), alone=True)

    async def _finish_many(self, items: list[tx.Finish]) -> Sequence[OffloadError | None]:
        make = finish.many  # one statement, one round trip (see .finish)
        return await self._run_plan(lambda: make(self.names, self._fixed_now(), items), alone=True)

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


def _select_one() -> Plan[None]:
    yield Query("SELECT 1")
