"""The SQLite backend's transactions: one function per state change, run by the writer thread.

Each takes the open connection (inside ``BEGIN IMMEDIATE``) and the backend's ``now``, checks the
move against the transition table, writes the job row and its history row, and returns the
result. Nothing here blocks on anything but SQLite; nothing here knows about threads or loops.
Each outcome of a run (succeed, fail, retry, mark_cancelled, release) is a function that owns
its SQL; they share :func:`move`, the lease-checked move out of running. The claim is in
:mod:`.claim`.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

import orjson

from offload.backends._common import check_transition
from offload.backends.base import CANCEL_INSTEAD
from offload.backends.sqlite import retention, schema
from offload.backends.sqlite.claim import capped_ready, claim
from offload.backends.sqlite.schema import SELECT_JOB, fetch
from offload.backends.sqlite.submit import idempotent_match, submit
from offload.core.job import JobRecord, Lease, NewJob, RenewResult, WorkerInfo
from offload.core.retention import RetentionPolicy
from offload.core.states import ACTIVE_STATES, TERMINAL_STATES, Reason, State
from offload.errors import InvalidTransition, JobNotFound, LeaseLost

#: Set with every move to a final state: when prune may delete the job (never without a ttl).
EXPIRES = "expires_at = :now + result_ttl"
OWNED = "id = ? AND token = ? AND status = 'running' AND lease_until > ?"
#: What a move to a final state sets besides the status.
FINISH = f"result = :result, error = :error, lease_until = NULL, finished_at = :now, {EXPIRES}"

# the claim's and the submit's, called through this module by the backend
__all__ = ["SELECT_JOB", "capped_ready", "claim", "fetch", "idempotent_match", "submit"]


def renew(
    conn: sqlite3.Connection, now: float, leases: list[Lease], lease_seconds: float | None
) -> RenewResult:
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


def heartbeat(conn: sqlite3.Connection, now: float, worker: WorkerInfo, ttl: float) -> None:
    """Upsert a worker's heartbeat (or drop it when ``ttl`` is 0); forget expired workers."""
    conn.execute("DELETE FROM workers WHERE expires_at <= ? OR id = ?", (now, worker.id))
    if ttl > 0:
        info = dataclasses.replace(worker, last_seen=now)
        conn.execute(
            "INSERT INTO workers VALUES (?, ?, ?)",
            (worker.id, orjson.dumps(dataclasses.asdict(info)), now + ttl),
        )


def live_workers(conn: sqlite3.Connection, now: float) -> list[WorkerInfo]:
    rows = conn.execute("SELECT info FROM workers WHERE expires_at > ?", (now,)).fetchall()
    workers = [WorkerInfo(**orjson.loads(row[0])) for row in rows]
    return sorted(workers, key=lambda w: (w.started_at, w.id))


def progress(
    conn: sqlite3.Connection,
    now: float,
    lease: Lease,
    fraction: float | None,
    message: str | None,
) -> None:
    cur = conn.execute(
        f"UPDATE jobs SET progress = ?, progress_message = ?, updated_at = ? WHERE {OWNED}",
        (fraction, message, now, lease.job_id, lease.token, now),
    )
    if cur.rowcount != 1:
        raise LeaseLost(lease.job_id, lease.token)


def move(
    conn: sqlite3.Connection,
    now: float,
    lease: Lease,
    target: State,
    reason: Reason,
    sets: str,
    params: dict[str, Any],
    *,
    detail: str | None = None,
) -> JobRecord:
    """Move a job the caller holds a lease on out of running (conditional on the lease): the
    part the outcome functions below share; ``sets`` is their SQL, ``params`` its values.

    A job that would run again (retry, release) but whose cancel was requested is
    cancelled instead.
    """
    if target in TERMINAL_STATES:  # one statement: worker, attempt and token stay as they are
        check_transition(lease.job_id, State.RUNNING, target)
        row = conn.execute(
            f"UPDATE jobs SET status = :target, updated_at = :now, {sets} "
            "WHERE id = :id AND token = :token AND status = 'running' AND lease_until > :now "
            f"RETURNING {schema.JOB_COLUMNS}",
            {
                **params,
                "target": target.value,
                "now": now,
                "id": lease.job_id,
                "token": lease.token,
            },
        ).fetchone()
        if row is None:
            raise LeaseLost(lease.job_id, lease.token)
        job = schema.row_to_job(row)
        conn.execute(
            schema.HISTORY_INSERT, schema.history_row(job, State.RUNNING, reason, now, detail)
        )
        return job
    row = conn.execute(f"{SELECT_JOB} WHERE {OWNED}", (lease.job_id, lease.token, now)).fetchone()
    if row is None:
        raise LeaseLost(lease.job_id, lease.token)
    run = schema.row_to_job(row)
    if run.cancel_requested and target in ACTIVE_STATES:
        target, reason, detail = State.CANCELLED, Reason.CANCELLED, CANCEL_INSTEAD
        sets, params = f"lease_until = NULL, finished_at = :now, {EXPIRES}", {}
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


def succeed(conn: sqlite3.Connection, now: float, lease: Lease, result: bytes) -> JobRecord:
    """running -> succeeded, with the JSON of its result."""
    params = {"result": result, "error": None}
    return move(conn, now, lease, State.SUCCEEDED, Reason.SUCCEEDED, FINISH, params)


def succeed_then(
    conn: sqlite3.Connection, now: float, lease: Lease, result: bytes, then: list[NewJob]
) -> None:
    """A workflow step's success and the submit of what follows it, in one transaction (any
    error rolls back both). Jobs of ``then`` that exist already are left as they are."""
    succeed(conn, now, lease, result)
    ids = [job.id for job in then]
    marks = ", ".join("?" * len(ids))
    have = {row[0] for row in conn.execute(f"SELECT id FROM jobs WHERE id IN ({marks})", ids)}
    submit(conn, now, [job for job in then if job.id not in have])


def fail(
    conn: sqlite3.Connection,
    now: float,
    lease: Lease,
    error: bytes,
    reason: Reason,
    detail: str | None,
) -> JobRecord:
    """running -> failed, with the JSON of its error."""
    params = {"result": None, "error": error}
    return move(conn, now, lease, State.FAILED, reason, FINISH, params, detail=detail)


def retry(
    conn: sqlite3.Connection,
    now: float,
    lease: Lease,
    error: bytes,
    delay: float,
    detail: str | None,
) -> JobRecord:
    """running -> queued (``delay`` 0) or scheduled ``delay`` seconds from now, keeping the
    error of the attempt that failed (cancelled instead if its cancel was requested)."""
    target = State.SCHEDULED if delay > 0 else State.QUEUED
    sets = "run_at = :now + :delay, error = :error, worker_id = NULL, lease_until = NULL"
    params = {"result": None, "error": error, "delay": delay}
    return move(conn, now, lease, target, Reason.RETRY, sets, params, detail=detail)


def mark_cancelled(
    conn: sqlite3.Connection, now: float, lease: Lease, error: bytes | None, detail: str | None
) -> JobRecord:
    """running -> cancelled (the worker stopped the run after its cancel was requested)."""
    params = {"result": None, "error": error}
    return move(conn, now, lease, State.CANCELLED, Reason.CANCELLED, FINISH, params, detail=detail)


def release(conn: sqlite3.Connection, now: float, lease: Lease) -> JobRecord:
    """running -> queued without using up an attempt (a worker shutting down)."""
    sets = "attempts = attempts - 1, run_at = :now, worker_id = NULL, lease_until = NULL"
    return move(conn, now, lease, State.QUEUED, Reason.RELEASED, sets, {})


def cancel(conn: sqlite3.Connection, now: float, job_id: str) -> JobRecord:
    job = fetch(conn, job_id)
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
            "UPDATE jobs SET status = 'cancelled', finished_at = :now, updated_at = :now, "
            f"{EXPIRES} WHERE id = :id",
            {"now": now, "id": job_id},
        )
    updated = fetch(conn, job_id)
    assert updated is not None
    if updated.status is State.CANCELLED:
        conn.execute(
            schema.HISTORY_INSERT,
            schema.history_row(updated, job.status, Reason.CANCELLED, now),
        )
    return updated


def reap(conn: sqlite3.Connection, now: float, limit: int, max_losses: int) -> int:
    rows = conn.execute(
        f"{SELECT_JOB} WHERE status = 'running' AND lease_until <= ? ORDER BY lease_until LIMIT ?",
        (now, limit),
    ).fetchall()
    for row in rows:
        job = schema.row_to_job(row)
        losses = job.losses + 1
        params: dict[str, Any] = {}
        if job.cancel_requested:
            sets = f"status = 'cancelled', lease_until = NULL, finished_at = :now, {EXPIRES}"
            reason, detail = Reason.CANCELLED, CANCEL_INSTEAD
        elif losses >= max_losses:
            message = f"the job's worker was lost {losses} times"
            params["error"] = orjson.dumps({"type": "WorkerLost", "message": message})
            sets = "status = 'failed', error = :error, lease_until = NULL, finished_at = :now, "
            sets += EXPIRES
            reason, detail = Reason.WORKER_LOST, message
        else:
            sets = "status = 'queued', worker_id = NULL, lease_until = NULL, run_at = :now"
            reason, detail = Reason.LEASE_EXPIRED, None
        new_row = conn.execute(
            f"UPDATE jobs SET {sets}, losses = :losses, updated_at = :now "
            f"WHERE id = :id AND token = :token RETURNING {schema.JOB_COLUMNS}",
            {**params, "now": now, "losses": losses, "id": job.id, "token": job.token},
        ).fetchone()
        moved = schema.row_to_job(new_row)
        check_transition(job.id, State.RUNNING, moved.status)
        conn.execute(
            schema.HISTORY_INSERT,
            schema.history_row(moved, State.RUNNING, reason, now, detail, run=job),
        )
    return len(rows)


def reclaim_dead(
    conn: sqlite3.Connection, now: float, grace: float, limit: int, max_losses: int
) -> int:
    """End the leases of running jobs whose worker has no live heartbeat, then reap them.

    Only jobs claimed at least ``grace`` seconds ago: a worker heartbeats before it claims, so
    its heartbeat cannot be missing for a job it claimed moments ago. The owner, if it lives
    after all, loses its lease (renew and finish see an expired lease) and its outcome is
    discarded, as for any expired lease.
    """
    ended = conn.execute(
        "UPDATE jobs SET lease_until = :now WHERE id IN (SELECT id FROM jobs WHERE "
        "status = 'running' AND lease_until > :now AND started_at <= :since AND NOT EXISTS "
        "(SELECT 1 FROM workers w WHERE w.id = jobs.worker_id AND w.expires_at > :now) "
        "LIMIT :limit)",
        {"now": now, "since": now - grace, "limit": limit},
    ).rowcount
    return reap(conn, now, limit, max_losses) if ended else 0


def prune(
    conn: sqlite3.Connection, now: float, limit: int, policy: RetentionPolicy | None = None
) -> int:
    """Delete up to ``limit`` ended jobs past their expiry or their retention, their history,
    and stale idempotency keys."""
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM jobs WHERE expires_at <= ? ORDER BY expires_at LIMIT ?", (now, limit)
        )
    ]
    retention.delete(conn, ids)
    pruned = len(ids)
    if policy is not None and pruned < limit:
        pruned += retention.prune(conn, now, limit - pruned, policy)
    conn.execute(
        "DELETE FROM idempotency WHERE (tenant, key) IN (SELECT tenant, key FROM idempotency "
        "WHERE expires_at <= ? LIMIT ?)",
        (now, limit),
    )
    return pruned
