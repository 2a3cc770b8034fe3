"""``sqlite:///path.db``: the embedded backend, zero servers.

WAL journal, ``BEGIN IMMEDIATE`` for every write, ``synchronous=FULL`` unless the URL says
``?synchronous=normal``, a busy timeout, and group commit through one writer thread per backend
object. Several API and worker processes on one machine may share one file. Never put the file
on a network filesystem: SQLite's locking is not reliable there.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from offload.backends import _sqlite_schema as schema
from offload.backends._common import check_transition, decode_cursor, encode_cursor, parse_url
from offload.backends._sqlite_io import SQLiteThread, is_busy
from offload.backends.base import CANCEL_INSTEAD, DEFAULT_MAX_LOSSES, IDEMPOTENCY_WINDOW
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
)
from offload.core.states import ACTIVE_STATES, TERMINAL_STATES, Reason, State
from offload.errors import (
    BackendUnavailable,
    ConfigurationError,
    IdempotencyConflict,
    InvalidTransition,
    JobNotFound,
    LeaseLost,
)

SYNCHRONOUS_MODES = ("off", "normal", "full", "extra")
SELECT_JOB = f"SELECT {schema.JOB_COLUMNS} FROM jobs"
OWNED = "id = ? AND token = ? AND status = 'running' AND lease_until > ?"


class SQLiteBackend:
    """Jobs in one SQLite file."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "full",
        busy_timeout: float = 5.0,
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
        self.poll_interval = poll_interval
        self.clock = clock or SystemClock()
        self.max_losses = max_losses
        self._writer = SQLiteThread("offload-sqlite-writer", self._connect, transactional=True)
        self._reader = SQLiteThread("offload-sqlite-reader", self._connect, transactional=False)
        self._wake_conn: sqlite3.Connection | None = None
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
        unknown = set(options) - {"synchronous", "busy_timeout"}
        if unknown:
            raise ConfigurationError(
                f"unknown SQLite URL option(s) {sorted(unknown)}; known: synchronous, busy_timeout"
            )
        return cls(
            path,
            synchronous=options.get("synchronous", "full").lower(),
            busy_timeout=float(options.get("busy_timeout", 5.0)),
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
                    self.path, timeout=self.busy_timeout, isolation_level=None,
                    check_same_thread=False,
                )  # fmt: skip
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

    def _create_schema(self) -> None:
        conn = self._connect()
        try:
            schema.create_schema(conn)
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
        if self._wake_conn is not None:
            self._wake_conn.close()
            self._wake_conn = None

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
        return await self._writer.run(lambda c: self._submit(c, items))

    def _submit(self, conn: sqlite3.Connection, jobs: list[NewJob]) -> list[JobRecord]:
        now = self.clock.now()
        stored: list[JobRecord] = []
        for new in jobs:
            existing = self._idempotent_match(conn, new, now)
            if existing is not None:
                stored.append(existing)
                continue
            run_at = new.run_at if new.run_at is not None else now + max(0.0, new.delay)
            status = State.SCHEDULED if run_at > now else State.QUEUED
            check_transition(new.id, None, status)
            conn.execute(
                "INSERT INTO jobs (id, task, queue, status, args, kwargs, priority, run_at, "
                "created_at, updated_at, idempotency_key, concurrency_key, tenant, meta) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new.id, new.task, new.queue, status.value, orjson.dumps(new.args),
                    orjson.dumps(new.kwargs), new.priority, run_at, now, now,
                    new.idempotency_key, new.concurrency_key, new.tenant, orjson.dumps(new.meta),
                ),
            )  # fmt: skip
            record = JobRecord(
                id=new.id, task=new.task, queue=new.queue, status=status, args=list(new.args),
                kwargs=dict(new.kwargs), priority=new.priority, attempts=0, losses=0,
                run_at=run_at, created_at=now, updated_at=now,
                idempotency_key=new.idempotency_key, concurrency_key=new.concurrency_key,
                tenant=new.tenant, meta=dict(new.meta),
            )  # fmt: skip
            conn.execute(
                schema.HISTORY_INSERT, schema.history_row(record, None, Reason.SUBMITTED, now)
            )
            if new.idempotency_key is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                    (new.tenant, new.idempotency_key, new.id, new.fingerprint,
                     now + IDEMPOTENCY_WINDOW),
                )  # fmt: skip
            stored.append(record)
        return stored

    def _idempotent_match(
        self, conn: sqlite3.Connection, new: NewJob, now: float
    ) -> JobRecord | None:
        if new.idempotency_key is None:
            return None
        row = conn.execute(
            "SELECT job_id, fingerprint FROM idempotency WHERE tenant = ? AND key = ? "
            "AND expires_at > ?",
            (new.tenant, new.idempotency_key, now),
        ).fetchone()
        if row is None:
            return None
        if row[1] != new.fingerprint:
            raise IdempotencyConflict(new.idempotency_key, row[0])
        job = _fetch(conn, row[0])
        if job is None:  # pruned; the key no longer protects anything
            return None
        return job

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
            lambda c: self._claim(c, worker_id, room, limit, lease_seconds, idle)
        )

    def _claim(
        self,
        conn: sqlite3.Connection,
        worker_id: str,
        room: dict[str, int],
        limit: int,
        lease_seconds: float,
        idle: bool,
    ) -> list[JobRecord]:
        now = self.clock.now()
        self._promote_due(conn, now)
        pick = (
            "SELECT id, priority, run_at, losses FROM jobs WHERE status = 'queued' AND queue = ? "
            "AND {} ORDER BY priority DESC, run_at, id LIMIT ?"
        )
        patient = now if idle else now - lease_seconds  # suspects due by then may be taken
        candidates: list[tuple[Any, ...]] = []
        suspects: list[tuple[Any, ...]] = []
        for queue, cap in room.items():
            candidates += conn.execute(pick.format("losses = 0"), (queue, min(cap, limit)))
            suspects += conn.execute(pick.format("losses > 0 AND run_at <= ?"), (queue, patient, 1))
        candidates.sort(key=_claim_order)
        suspects.sort(key=_claim_order)
        if suspects and (not candidates or _claim_order(suspects[0]) < _claim_order(candidates[0])):
            candidates = suspects[:1]  # a suspect comes first: it runs alone
        chosen = [row[0] for row in candidates[:limit]]
        if not chosen:
            return []
        marks = ",".join("?" * len(chosen))
        rows = conn.execute(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, token = token + 1, "
            "worker_id = ?, lease_until = ?, started_at = ?, updated_at = ?, progress = NULL, "
            f"progress_message = NULL WHERE id IN ({marks}) AND status = 'queued' "
            f"RETURNING {schema.JOB_COLUMNS}",
            (worker_id, now + lease_seconds, now, now, *chosen),
        ).fetchall()
        position = {job_id: i for i, job_id in enumerate(chosen)}
        claimed = sorted((schema.row_to_job(r) for r in rows), key=lambda j: position[j.id])
        conn.executemany(
            schema.HISTORY_INSERT,
            [schema.history_row(j, State.QUEUED, Reason.CLAIMED, now) for j in claimed],
        )
        return claimed

    def _promote_due(self, conn: sqlite3.Connection, now: float) -> None:
        due = "SELECT 1 FROM jobs WHERE status = 'scheduled' AND run_at <= ? LIMIT 1"
        if conn.execute(due, (now,)).fetchone() is None:
            return
        rows = conn.execute(
            "UPDATE jobs SET status = 'queued', updated_at = ? WHERE id IN (SELECT id FROM jobs "
            "WHERE status = 'scheduled' AND run_at <= ? ORDER BY run_at LIMIT 1000) "
            f"RETURNING {schema.JOB_COLUMNS}",
            (now, now),
        ).fetchall()
        conn.executemany(
            schema.HISTORY_INSERT,
            [
                schema.history_row(schema.row_to_job(r), State.SCHEDULED, Reason.PROMOTED, now)
                for r in rows
            ],
        )

    async def renew(
        self, worker_id: str, leases: Sequence[Lease], lease_seconds: float | None
    ) -> RenewResult:
        items = list(leases)
        if not items:
            return RenewResult(frozenset(), frozenset())
        runner = self._reader if lease_seconds is None else self._writer
        return await runner.run(lambda c: self._renew(c, items, lease_seconds))

    def _renew(
        self, conn: sqlite3.Connection, leases: list[Lease], lease_seconds: float | None
    ) -> RenewResult:
        now = self.clock.now()
        lost: set[str] = set()
        cancel: set[str] = set()
        for lease in leases:
            if lease_seconds is None:
                row = conn.execute(
                    f"SELECT cancel_requested FROM jobs WHERE {OWNED}",
                    (lease.job_id, lease.token, now),
                ).fetchone()
            else:
                row = conn.execute(
                    f"UPDATE jobs SET lease_until = ? WHERE {OWNED} RETURNING cancel_requested",
                    (now + lease_seconds, lease.job_id, lease.token, now),
                ).fetchone()
            if row is None:
                lost.add(lease.job_id)
            elif row[0]:
                cancel.add(lease.job_id)
        return RenewResult(frozenset(lost), frozenset(cancel))

    async def progress(self, lease: Lease, fraction: float | None, message: str | None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            now = self.clock.now()
            cur = conn.execute(
                f"UPDATE jobs SET progress = ?, progress_message = ?, updated_at = ? WHERE {OWNED}",
                (fraction, message, now, lease.job_id, lease.token, now),
            )
            if cur.rowcount != 1:
                raise LeaseLost(lease.job_id, lease.token)

        await self._writer.run(op)

    async def complete(self, lease: Lease, result: Any) -> JobRecord:
        return await self._finish(lease, State.SUCCEEDED, Reason.SUCCEEDED, result=result)

    async def fail(
        self,
        lease: Lease,
        error: dict[str, Any],
        *,
        retry_in: float | None = None,
        reason: Reason = Reason.FAILED,
    ) -> JobRecord:
        if retry_in is None:
            return await self._finish(lease, State.FAILED, reason, error=error)
        target = State.SCHEDULED if retry_in > 0 else State.QUEUED
        return await self._writer.run(
            lambda c: self._move(
                c, lease, target, Reason.RETRY, "run_at = :now + :delay, error = :error, "
                "worker_id = NULL, lease_until = NULL",
                {"delay": retry_in, "error": orjson.dumps(error)}, detail=error.get("message"),
            )
        )  # fmt: skip

    async def mark_cancelled(self, lease: Lease, error: dict[str, Any] | None = None) -> JobRecord:
        return await self._finish(lease, State.CANCELLED, Reason.CANCELLED, error=error)

    async def release(self, lease: Lease) -> JobRecord:
        return await self._writer.run(
            lambda c: self._move(
                c, lease, State.QUEUED, Reason.RELEASED, "attempts = attempts - 1, run_at = :now, "
                "worker_id = NULL, lease_until = NULL", {},
            )
        )  # fmt: skip

    async def _finish(
        self,
        lease: Lease,
        target: State,
        reason: Reason,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> JobRecord:
        params = {
            "result": None if target is not State.SUCCEEDED else orjson.dumps(result),
            "error": None if error is None else orjson.dumps(error),
        }
        detail = error.get("message") if error else None
        sets = "result = :result, error = :error, lease_until = NULL, finished_at = :now"
        return await self._writer.run(
            lambda c: self._move(c, lease, target, reason, sets, params, detail=detail)
        )

    def _move(
        self,
        conn: sqlite3.Connection,
        lease: Lease,
        target: State,
        reason: Reason,
        sets: str,
        params: dict[str, Any],
        *,
        detail: str | None = None,
    ) -> JobRecord:
        """Move a job the caller holds a lease on out of running (conditional on the lease).

        A job that would run again (retry, release) but whose cancel was requested is
        cancelled instead.
        """
        now = self.clock.now()
        if target in TERMINAL_STATES:  # one statement: worker, attempt and token stay as they are
            check_transition(lease.job_id, State.RUNNING, target)
            row = conn.execute(
                f"UPDATE jobs SET status = :target, updated_at = :now, {sets} "
                "WHERE id = :id AND token = :token AND status = 'running' AND lease_until > :now "
                f"RETURNING {schema.JOB_COLUMNS}",
                {**params, "target": target.value, "now": now, "id": lease.job_id,
                 "token": lease.token},
            ).fetchone()  # fmt: skip
            if row is None:
                raise LeaseLost(lease.job_id, lease.token)
            job = schema.row_to_job(row)
            conn.execute(
                schema.HISTORY_INSERT, schema.history_row(job, State.RUNNING, reason, now, detail)
            )
            return job
        row = conn.execute(
            f"{SELECT_JOB} WHERE {OWNED}", (lease.job_id, lease.token, now)
        ).fetchone()
        if row is None:
            raise LeaseLost(lease.job_id, lease.token)
        run = schema.row_to_job(row)
        if run.cancel_requested and target in ACTIVE_STATES:
            target, reason, detail = State.CANCELLED, Reason.CANCELLED, CANCEL_INSTEAD
            sets, params = "lease_until = NULL, finished_at = :now", {}
        check_transition(lease.job_id, State.RUNNING, target)
        job = schema.row_to_job(
            conn.execute(
                f"UPDATE jobs SET status = :target, updated_at = :now, {sets} WHERE id = :id "
                f"RETURNING {schema.JOB_COLUMNS}",
                {**params, "target": target.value, "now": now, "id": lease.job_id},
            ).fetchone()
        )
        conn.execute(
            schema.HISTORY_INSERT,
            schema.history_row(job, State.RUNNING, reason, now, detail, run=run),
        )
        return job

    async def cancel(self, job_id: str) -> JobRecord:
        return await self._writer.run(lambda c: self._cancel(c, job_id))

    def _cancel(self, conn: sqlite3.Connection, job_id: str) -> JobRecord:
        now = self.clock.now()
        job = _fetch(conn, job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.status in TERMINAL_STATES:
            raise InvalidTransition(job_id, job.status.value, State.CANCELLED.value)
        if job.status is State.RUNNING:
            conn.execute(
                "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?", (now, job_id)
            )
        else:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, updated_at = ? "
                "WHERE id = ?",
                (now, now, job_id),
            )
        updated = _fetch(conn, job_id)
        assert updated is not None
        if updated.status is State.CANCELLED:
            conn.execute(
                schema.HISTORY_INSERT,
                schema.history_row(updated, job.status, Reason.CANCELLED, now),
            )
        return updated

    async def reap(self, limit: int = 100) -> int:
        return await self._writer.run(lambda c: self._reap(c, limit))

    def _reap(self, conn: sqlite3.Connection, limit: int) -> int:
        now = self.clock.now()
        rows = conn.execute(
            f"{SELECT_JOB} WHERE status = 'running' AND lease_until <= ? ORDER BY lease_until "
            "LIMIT ?",
            (now, limit),
        ).fetchall()
        for row in rows:
            job = schema.row_to_job(row)
            losses = job.losses + 1
            params: tuple[Any, ...]
            if job.cancel_requested:
                sets = "status = 'cancelled', lease_until = NULL, finished_at = ?"
                reason, detail, params = Reason.CANCELLED, CANCEL_INSTEAD, (now,)
            elif losses >= self.max_losses:
                message = f"the job's worker was lost {losses} times"
                error = orjson.dumps({"type": "WorkerLost", "message": message})
                sets = "status = 'failed', error = ?, lease_until = NULL, finished_at = ?"
                reason, detail = Reason.WORKER_LOST, message
                params = (error, now)
            else:
                sets = "status = 'queued', worker_id = NULL, lease_until = NULL, run_at = ?"
                reason, detail, params = Reason.LEASE_EXPIRED, None, (now,)
            new_row = conn.execute(
                f"UPDATE jobs SET {sets}, losses = ?, updated_at = ? WHERE id = ? AND token = ? "
                f"RETURNING {schema.JOB_COLUMNS}",
                (*params, losses, now, job.id, job.token),
            ).fetchone()
            moved = schema.row_to_job(new_row)
            check_transition(job.id, State.RUNNING, moved.status)
            conn.execute(
                schema.HISTORY_INSERT,
                schema.history_row(moved, State.RUNNING, reason, now, detail, run=job),
            )
        return len(rows)

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        return await self._reader.run(lambda c: _fetch(c, job_id))

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
        sql = SELECT_JOB + (" WHERE " + " AND ".join(where) if where else "")
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
        rows = await self._reader.run(
            lambda c: c.execute(
                "SELECT queue, status, COUNT(*) FROM jobs GROUP BY queue, status ORDER BY queue"
            ).fetchall()
        )
        counts: dict[str, dict[State, int]] = {}
        for queue, status, n in rows:
            counts.setdefault(queue, {})[State(status)] = n
        return [QueueStats(q, c) for q, c in counts.items()]

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Poll ``PRAGMA data_version`` (a counter of other connections' commits: microseconds
        to read) until something changes, a scheduled job falls due, or ``timeout`` passes."""
        conn = self._wake()
        loop = asyncio.get_running_loop()
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        marks = ",".join("?" * len(queues))
        ready = conn.execute(
            f"SELECT 1 FROM jobs WHERE status = 'queued' AND queue IN ({marks}) AND losses = 0 "
            "LIMIT 1",
            list(queues),
        ).fetchone()
        if ready is not None:
            return
        due = conn.execute("SELECT MIN(run_at) FROM jobs WHERE status = 'scheduled'").fetchone()[0]
        wait = timeout if due is None else min(timeout, max(0.0, due - self.clock.now()))
        deadline = loop.time() + wait
        while loop.time() < deadline:
            await asyncio.sleep(min(self.poll_interval, max(0.0, deadline - loop.time())))
            if conn.execute("PRAGMA data_version").fetchone()[0] != version:
                return

    def _wake(self) -> sqlite3.Connection:
        if self._wake_conn is None:
            self._wake_conn = self._connect()
            self._wake_conn.execute("PRAGMA busy_timeout = 100")
        return self._wake_conn


def _claim_order(row: tuple[Any, ...]) -> tuple[int, float, str]:
    """Higher priority first, then earlier due time, then id (rows: id, priority, run_at)."""
    return (-row[1], row[2], row[0])


def _fetch(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(f"{SELECT_JOB} WHERE id = ?", (job_id,)).fetchone()
    return schema.row_to_job(row) if row is not None else None
