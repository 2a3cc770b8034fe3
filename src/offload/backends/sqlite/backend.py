"""``sqlite:///path.db``: the embedded backend, zero servers.

WAL journal, ``BEGIN IMMEDIATE`` for every write, ``synchronous=FULL`` unless the URL says
``?synchronous=normal``, a busy timeout, and group commit through one writer thread per backend
object. Submits and cancels are fsynced; a worker's own writes (claims, renewals, outcomes,
reaping, pruning) commit without an fsync of their own: a process crash keeps them, and a power
failure can only roll them back, so that the job runs again (see docs/reliability.md). Several
API and worker processes on one machine may share one file. Never put the file on a network
filesystem: SQLite's locking is not reliable there.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from offload.backends._common import (
    check_retry_in,
    decode_cursor,
    encode_cursor,
    parse_url,
    ready_age,
)
from offload.backends.base import DEFAULT_MAX_LOSSES
from offload.backends.sqlite import heads, schema, tx
from offload.backends.sqlite.threads import LOCK_RETRY_DEADLINE, SQLiteThread, is_busy
from offload.backends.sqlite.watch import Watcher
from offload.core.clock import Clock, SystemClock
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
from offload.errors import (
    BackendUnavailable,
    ConfigurationError,
)

SYNCHRONOUS_MODES = ("off", "normal", "full", "extra")


#: Seconds past its timeout an idle wait may last at most, whatever its wake-up thread does.
WAIT_MARGIN = 1.0


class SQLiteBackend:
    """Jobs in one SQLite file."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "full",
        busy_timeout: float = 5.0,
        lock_timeout: float = LOCK_RETRY_DEADLINE,
        poll_interval: float = 0.002,
        clock: Clock | None = None,
        max_losses: int = DEFAULT_MAX_LOSSES,
    ) -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {synchronous!r}"
            )
        if path in ("", ":memory:"):
            raise ConfigurationError(
                "the sqlite backend needs a file path; for tests use memory://"
            )
        self.path = path
        self.url = f"sqlite:///{path}"
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        if not (math.isfinite(lock_timeout) and lock_timeout > 0):
            raise ConfigurationError(
                f"lock_timeout must be a number of seconds > 0, not {lock_timeout!r}"
            )
        self.lock_timeout = lock_timeout
        self.poll_interval = poll_interval
        self.clock = clock or SystemClock()
        self.max_losses = max_losses
        relaxed = "NORMAL" if synchronous in ("full", "extra") else None
        self._writer = SQLiteThread(
            "offload-sqlite-writer",
            self._connect_writer,
            transactional=True,
            durable=synchronous.upper(),
            relaxed=relaxed,
            lock_timeout=self.lock_timeout,
        )
        self._reader = SQLiteThread("offload-sqlite-reader", self._connect, transactional=False)
        self._watcher = Watcher(self._connect_watcher, poll_interval)
        self._opened = False

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> SQLiteBackend:
        parsed = parse_url(url)
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        if parsed.netloc or not path:
            raise ConfigurationError(
                f"SQLite URL {url!r} must look like sqlite:///relative.db or sqlite:////abs/path.db"
            )
        options = dict(parsed.options)
        unknown = set(options) - {"synchronous", "busy_timeout", "lock_timeout"}
        if unknown:
            raise ConfigurationError(
                f"unknown SQLite URL option(s) {sorted(unknown)}; known: synchronous, "
                "busy_timeout, lock_timeout"
            )
        return cls(
            path,
            synchronous=options.get("synchronous", "full").lower(),
            busy_timeout=float(options.get("busy_timeout", 5.0)),
            lock_timeout=float(options.get("lock_timeout", LOCK_RETRY_DEADLINE)),
            clock=clock,
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        folder = Path(self.path).resolve().parent
        if not folder.is_dir():
            raise ConfigurationError(
                f"cannot open SQLite database {self.path!r}: folder {str(folder)!r} does not exist"
            )
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                # Switching to WAL needs a moment alone with the file: wait out a racing opener.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
                return conn
            except sqlite3.Error as exc:
                if is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                raise ConfigurationError(
                    f"cannot open SQLite database {self.path!r}: {exc}"
                ) from None

    def _connect_writer(self) -> sqlite3.Connection:
        # The writer waits for the write lock in its own loop, in steps of a fraction of a
        # millisecond: SQLite's built-in busy handler sleeps up to 100 ms at a time, which would
        # become the latency of every submit whenever another process holds the lock.
        conn = self._connect()
        conn.execute("PRAGMA busy_timeout = 0")
        return conn

    def _create_schema(self) -> None:
        """Read the schema version; only a file without the current schema is written to
        (waiting for the write lock like every writer does, ``lock_timeout`` at most)."""
        conn = self._connect()
        deadline = time.monotonic() + self.lock_timeout
        try:
            while schema.stored_version(conn) != schema.SCHEMA_VERSION:
                try:
                    schema.create_schema(conn)
                except sqlite3.Error as exc:
                    if not (is_busy(exc) and time.monotonic() < deadline):
                        raise
                    time.sleep(0.01)
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"cannot prepare SQLite database {self.path!r}: {exc}"
            ) from None
        finally:
            conn.close()

    async def open(self) -> None:
        if self._opened:
            return
        await asyncio.to_thread(self._create_schema)
        await asyncio.to_thread(self._writer.start)
        await asyncio.to_thread(self._reader.start)
        self._opened = True

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        await asyncio.to_thread(self._writer.stop)
        await asyncio.to_thread(self._reader.stop)
        await asyncio.to_thread(self._watcher.close)

    async def ping(self) -> None:
        try:
            await self._reader.run(lambda c: c.execute("SELECT 1").fetchone())
        except Exception as exc:
            raise BackendUnavailable(
                f"SQLite database {self.path!r} is unavailable: {exc}"
            ) from exc

    async def now(self) -> float:
        return self.clock.now()

    # -- writes --------------------------------------------------------------------------------
    async def submit(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        items = list(jobs)
        return await self._writer.run(lambda c: tx.submit(c, self.clock.now(), items))

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
        return await self._writer.run(
            lambda c: tx.claim(c, self.clock.now(), worker_id, room, limit, lease_seconds, idle),
            durable=False,
        )

    async def renew(
        self, worker_id: str, leases: Sequence[Lease], lease_seconds: float | None
    ) -> RenewResult:
        items = list(leases)
        if not items:
            return RenewResult(frozenset(), frozenset())
        runner = self._reader if lease_seconds is None else self._writer
        return await runner.run(
            lambda c: tx.renew(c, self.clock.now(), items, lease_seconds), durable=False
        )

    async def progress(self, lease: Lease, fraction: float | None, message: str | None) -> None:
        await self._writer.run(
            lambda c: tx.progress(c, self.clock.now(), lease, fraction, message), durable=False
        )

    async def complete(self, lease: Lease, result: Any, *, then: Sequence[NewJob] = ()) -> None:
        encoded = orjson.dumps(result)
        if not then:
            await self._outcome(lambda c, now: tx.succeed(c, now, lease, encoded))
            return
        items = list(then)
        await self._writer.run(  # it submits jobs: durable like any submit
            lambda c: tx.succeed_then(c, self.clock.now(), lease, encoded, items)
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
        encoded = orjson.dumps(error)
        if retry_in is None:
            await self._outcome(lambda c, now: tx.fail(c, now, lease, encoded, reason, detail))
            return
        delay = retry_in
        await self._outcome(lambda c, now: tx.retry(c, now, lease, encoded, delay, detail))

    async def mark_cancelled(self, lease: Lease, error: dict[str, Any] | None = None) -> None:
        encoded = None if error is None else orjson.dumps(error)
        detail = error.get("message") if error else None
        await self._outcome(lambda c, now: tx.mark_cancelled(c, now, lease, encoded, detail))

    async def release(self, lease: Lease) -> None:
        await self._outcome(lambda c, now: tx.release(c, now, lease))

    async def _outcome(self, write: Callable[[sqlite3.Connection, float], object]) -> None:
        """One outcome of a run: a worker's own write, not fsynced (see the module doc)."""
        await self._writer.run(lambda c: write(c, self.clock.now()), durable=False)

    async def cancel(self, job_id: str) -> JobRecord:
        return await self._writer.run(lambda c: tx.cancel(c, self.clock.now(), job_id))

    async def reap(self, limit: int = 100) -> int:
        return await self._writer.run(
            lambda c: tx.reap(c, self.clock.now(), limit, self.max_losses), durable=False
        )

    async def reclaim_dead(self, grace: float, limit: int = 100) -> int:
        return await self._writer.run(
            lambda c: tx.reclaim_dead(c, self.clock.now(), grace, limit, self.max_losses),
            durable=False,
        )

    async def prune(self, limit: int = 500, policy: RetentionPolicy | None = None) -> int:
        now = self.clock.now()
        return await self._writer.run(lambda c: tx.prune(c, now, limit, policy), durable=False)

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        return await self._reader.run(lambda c: tx.fetch(c, job_id))

    async def list_jobs(self, flt: JobFilter) -> Page:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", flt.status.value if flt.status else None),
            ("task", flt.task),
            ("queue", flt.queue),
            ("tenant", flt.tenant),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if flt.cursor is not None:
            where.append("(created_at, id) < (?, ?)")
            params += decode_cursor(flt.cursor)
        sql = tx.SELECT_JOB + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(flt.limit + 1)
        rows = await self._reader.run(lambda c: c.execute(sql, params).fetchall())
        jobs = [schema.row_to_job(r) for r in rows[: flt.limit]]
        more = len(rows) > flt.limit
        cursor = encode_cursor(jobs[-1].created_at, jobs[-1].id) if more and jobs else None
        return Page(jobs, cursor)

    async def history(self, job_id: str) -> list[Transition]:
        rows = await self._reader.run(
            lambda c: c.execute(
                "SELECT job_id, at, from_status, to_status, reason, attempt, token, worker_id, "
                "detail FROM history WHERE job_id = ? ORDER BY seq",
                (job_id,),
            ).fetchall()
        )
        return [schema.row_to_transition(r) for r in rows]

    async def stats(self) -> list[QueueStats]:
        now = self.clock.now()
        rows, oldest = await self._reader.run(
            lambda c: (
                c.execute(
                    "SELECT queue, status, COUNT(*) FROM jobs GROUP BY queue, status ORDER BY queue"
                ).fetchall(),
                heads.oldest_ready(c, now),
            )
        )
        counts: dict[str, dict[State, int]] = {}
        for queue, status, n in rows:
            counts.setdefault(queue, {})[State(status)] = n
        return [QueueStats(q, c, ready_age(now, oldest.get(q))) for q, c in counts.items()]

    async def heartbeat(self, worker: WorkerInfo, *, ttl: float) -> None:
        await self._writer.run(
            lambda c: tx.heartbeat(c, self.clock.now(), worker, ttl), durable=False
        )

    async def workers(self) -> list[WorkerInfo]:
        return await self._reader.run(lambda c: tx.live_workers(c, self.clock.now()))

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Sleep until another connection commits (``PRAGMA data_version`` moves, polled by a
        thread), a scheduled job falls due, or ``timeout`` passes; at once if work is ready."""
        marks = ",".join("?" * len(queues))
        names = list(queues)

        def probe(conn: sqlite3.Connection) -> float:
            ready = conn.execute(
                f"SELECT 1 FROM jobs WHERE status = 'queued' AND queue IN ({marks}) "
                "AND losses = 0 AND capped = 0 LIMIT 1",
                names,
            ).fetchone()
            if ready is not None or tx.capped_ready(conn, names):
                return 0.0
            due = conn.execute("SELECT MIN(run_at) FROM jobs WHERE status = 'scheduled'")
            first = due.fetchone()[0]
            return timeout if first is None else min(timeout, max(0.0, first - self.clock.now()))

        try:  # the watcher wakes every waiter even if it fails; this bound is a last resort
            await asyncio.wait_for(self._watcher.wait(probe), timeout + WAIT_MARGIN)
        except TimeoutError:
            pass

    def _connect_watcher(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA busy_timeout = 100")
        return conn
