"""The SQLite backend's transactions: one function per state change, run by the writer thread.

Each takes the open connection (inside ``BEGIN IMMEDIATE``) and the backend's ``now``, checks the
move against the transition table, writes the job row and its history row, and returns the
result. Nothing here blocks on anything but SQLite; nothing here knows about threads or loops.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from itertools import islice
from typing import Any

import orjson

from offload.backends import _sqlite_schema as schema
from offload.backends._common import check_new_job, check_transition
from offload.backends._gate import Gate, Slot
from offload.backends.base import CANCEL_INSTEAD, IDEMPOTENCY_WINDOW
from offload.core.job import JobRecord, Lease, NewJob, RenewResult, WorkerInfo
from offload.core.limits import Limits
from offload.core.states import ACTIVE_STATES, TERMINAL_STATES, Reason, State
from offload.errors import IdempotencyConflict, InvalidTransition, JobNotFound, LeaseLost

SELECT_JOB = f"SELECT {schema.JOB_COLUMNS} FROM jobs"
NO_LIMITS = Limits()
#: Jobs of limited tasks with a free slot one claim considers beyond what it wants, per queue
#: (a later candidate may still find its slot taken by an earlier one of the same claim).
CAPPED_SCAN = 64
#: Set with every move to a final state: when prune may delete the job (never without a ttl).
EXPIRES = "expires_at = :now + result_ttl"
OWNED = "id = ? AND token = ? AND status = 'running' AND lease_until > ?"


def submit(conn: sqlite3.Connection, now: float, jobs: list[NewJob]) -> list[JobRecord]:
    for new in jobs:  # before the first write: no bad number can half-apply a submit
        check_new_job(new)
    stored: list[JobRecord] = []
    for new in jobs:
        existing = idempotent_match(conn, new, now)
        if existing is not None:
            stored.append(existing)
            continue
        run_at = new.run_at if new.run_at is not None else now + max(0.0, new.delay)
        status = State.SCHEDULED if run_at > now else State.QUEUED
        check_transition(new.id, None, status)
        lim = new.limits or NO_LIMITS
        conn.execute(
            "INSERT INTO jobs (id, task, queue, status, args, kwargs, priority, run_at, "
            "created_at, updated_at, idempotency_key, concurrency_key, tenant, meta, result_ttl, "
            "capped, cap, key_cap, rate, key_rate) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new.id, new.task, new.queue, status.value, orjson.dumps(new.args),
                orjson.dumps(new.kwargs), new.priority, run_at, now, now,
                new.idempotency_key, new.concurrency_key, new.tenant, orjson.dumps(new.meta),
                new.result_ttl, int(lim.capped), lim.concurrency, lim.key_concurrency, lim.rate,
                lim.key_rate,
            ),
        )  # fmt: skip
        record = JobRecord(
            id=new.id, task=new.task, queue=new.queue, status=status, args=list(new.args),
            kwargs=dict(new.kwargs), priority=new.priority, attempts=0, losses=0,
            run_at=run_at, created_at=now, updated_at=now,
            idempotency_key=new.idempotency_key, concurrency_key=new.concurrency_key,
            tenant=new.tenant, meta=dict(new.meta),
        )  # fmt: skip
        conn.execute(schema.HISTORY_INSERT, schema.history_row(record, None, Reason.SUBMITTED, now))
        if new.idempotency_key is not None:
            conn.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                (new.tenant, new.idempotency_key, new.id, new.fingerprint,
                 now + IDEMPOTENCY_WINDOW),
            )  # fmt: skip
        stored.append(record)
    return stored


def idempotent_match(conn: sqlite3.Connection, new: NewJob, now: float) -> JobRecord | None:
    if new.idempotency_key is None:
        return None
    row = conn.execute(
        "SELECT job_id, fingerprint FROM idempotency WHERE tenant = ? AND key = ? "
        "AND expires_at > ?",
        (new.tenant, new.idempotency_key, now),
    ).fetchone()
    if row is None:
        return None
    job = fetch(conn, row[0])
    if job is None:  # pruned: the key no longer protects anything, whatever the request
        return None
    if row[1] != new.fingerprint:
        raise IdempotencyConflict(new.idempotency_key, row[0])
    return job


#: A queued capped job none of whose slots is full, counted on the running capped jobs only
#: (the jobs_slots index): the claim never reads through the jobs that wait for a slot.
HAS_ROOM = (
    "(key_cap IS NULL OR concurrency_key IS NULL OR key_cap > (SELECT COUNT(*) FROM jobs r "
    "WHERE r.status = 'running' AND r.capped = 1 AND r.task = jobs.task "
    "AND r.concurrency_key = jobs.concurrency_key AND r.key_cap IS NOT NULL)) "
    "AND (cap IS NULL OR cap > (SELECT COUNT(*) FROM jobs r WHERE r.status = 'running' "
    "AND r.capped = 1 AND r.task = jobs.task AND r.cap IS NOT NULL))"
)


def claim(
    conn: sqlite3.Connection,
    now: float,
    worker_id: str,
    room: dict[str, int],
    limit: int,
    lease_seconds: float,
    idle: bool,
) -> list[JobRecord]:
    promote_due(conn, now)
    pick = (
        "SELECT id, priority, run_at, losses, queue, task, concurrency_key, cap, key_cap, rate, "
        "key_rate, reserved FROM jobs WHERE status = 'queued' AND queue = ? AND {} "
        "ORDER BY priority DESC, run_at, id LIMIT ?"
    )
    patient = now if idle else now - lease_seconds  # suspects due by then may be taken
    gate = Gate(now, lambda slot: _running_in(conn, slot), lambda b: _next_start(conn, b))
    candidates: list[tuple[Any, ...]] = []
    suspects: list[tuple[Any, ...]] = []
    for queue, cap in room.items():
        wanted = min(cap, limit)
        candidates += conn.execute(pick.format("losses = 0 AND capped = 0"), (queue, wanted))
        # Jobs whose slot is full are passed over, however many: they never hide the rest.
        capped = conn.execute(pick.format(f"losses = 0 AND capped = 1 AND {HAS_ROOM}"), (queue, -1))
        candidates += islice((r for r in capped if not _full(gate, r)), wanted + CAPPED_SCAN)
        capped.close()
        suspects += conn.execute(pick.format("losses > 0 AND run_at <= ?"), (queue, patient, 1))
    candidates.sort(key=_claim_order)
    suspects.sort(key=_claim_order)
    chosen: list[str] = []
    deferred: list[tuple[float, str]] = []
    if suspects and (not candidates or _claim_order(suspects[0]) < _claim_order(candidates[0])):
        # A suspect comes first: it runs alone (if its limits let it start now).
        _gate(gate, suspects[0], chosen, deferred)
    if not chosen:
        taken = dict.fromkeys(room, 0)
        for row in candidates:
            if len(chosen) >= limit:
                break
            if taken[row[4]] < room[row[4]] and _gate(gate, row, chosen, deferred):
                taken[row[4]] += 1
    if gate.buckets:
        conn.executemany("INSERT OR REPLACE INTO buckets VALUES (?, ?)", gate.buckets.items())
    if deferred:
        _defer(conn, now, deferred)
    if not chosen:
        return []
    marks = ",".join("?" * len(chosen))
    rows = conn.execute(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, token = token + 1, "
        "worker_id = ?, lease_until = ?, started_at = ?, updated_at = ?, progress = NULL, "
        f"progress_message = NULL, reserved = 0 WHERE id IN ({marks}) AND status = 'queued' "
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


def capped_ready(conn: sqlite3.Connection, queues: list[str]) -> bool:
    """Whether a queued job of a capped task in ``queues`` has a free slot (a job still
    waiting is woken by the finish that frees its slot)."""
    marks = ",".join("?" * len(queues))
    row = conn.execute(
        f"SELECT 1 FROM jobs WHERE status = 'queued' AND queue IN ({marks}) AND losses = 0 "
        f"AND capped = 1 AND {HAS_ROOM} LIMIT 1",
        queues,
    ).fetchone()
    return row is not None


def _full(gate: Gate, row: tuple[Any, ...]) -> bool:
    return gate.full(row[5], row[6], Limits(row[7], row[8], row[9], row[10]))


def _gate(
    gate: Gate, row: tuple[Any, ...], chosen: list[str], deferred: list[tuple[float, str]]
) -> bool:
    """Put a candidate row where its limits send it; True when it starts now."""
    job_id, task, key = row[0], row[5], row[6]
    if row[7] is None and row[8] is None and row[9] is None and row[10] is None:
        chosen.append(job_id)
        return True
    verdict = gate.decide(task, key, Limits(row[7], row[8], row[9], row[10]), bool(row[11]))
    if verdict is True:
        chosen.append(job_id)
        return True
    if verdict is not False:
        deferred.append((float(verdict), job_id))
    return False


def _defer(conn: sqlite3.Connection, now: float, deferred: list[tuple[float, str]]) -> None:
    """queued -> scheduled at the reserved start of each rate-limited job."""
    for start, job_id in deferred:
        row = conn.execute(
            "UPDATE jobs SET status = 'scheduled', run_at = ?, reserved = 1, updated_at = ? "
            f"WHERE id = ? RETURNING {schema.JOB_COLUMNS}",
            (start, now, job_id),
        ).fetchone()
        job = schema.row_to_job(row)
        check_transition(job_id, State.QUEUED, State.SCHEDULED)
        conn.execute(
            schema.HISTORY_INSERT, schema.history_row(job, State.QUEUED, Reason.RATE_LIMITED, now)
        )


def _running_in(conn: sqlite3.Connection, slot: Slot) -> int:
    """Running capped jobs holding a slot (see offload.backends._gate)."""
    params: tuple[str, ...] = (slot.task,)
    if slot.key is None:
        sql = "task = ? AND cap IS NOT NULL"
    else:
        sql = "task = ? AND concurrency_key = ? AND key_cap IS NOT NULL"
        params = (slot.task, slot.key)
    row = conn.execute(
        f"SELECT COUNT(*) FROM jobs WHERE status = 'running' AND capped = 1 AND {sql}", params
    ).fetchone()
    return int(row[0])


def _next_start(conn: sqlite3.Connection, bucket: str) -> float | None:
    row = conn.execute("SELECT next_start FROM buckets WHERE name = ?", (bucket,)).fetchone()
    return None if row is None else float(row[0])


def promote_due(conn: sqlite3.Connection, now: float) -> None:
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
    """Move a job the caller holds a lease on out of running (conditional on the lease).

    A job that would run again (retry, release) but whose cancel was requested is
    cancelled instead.
    """
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


def succeed_then(
    conn: sqlite3.Connection,
    now: float,
    lease: Lease,
    sets: str,
    params: dict[str, Any],
    then: list[NewJob],
) -> None:
    """A workflow step's success and the submit of what follows it, in one transaction (any
    error rolls back both). Jobs of ``then`` that exist already are left as they are."""
    move(conn, now, lease, State.SUCCEEDED, Reason.SUCCEEDED, sets, params)
    ids = [job.id for job in then]
    marks = ", ".join("?" * len(ids))
    have = {row[0] for row in conn.execute(f"SELECT id FROM jobs WHERE id IN ({marks})", ids)}
    submit(conn, now, [job for job in then if job.id not in have])


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


def prune(conn: sqlite3.Connection, now: float, limit: int) -> int:
    """Delete up to ``limit`` ended jobs past their expiry, their history, and stale
    idempotency keys."""
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM jobs WHERE expires_at <= ? ORDER BY expires_at LIMIT ?", (now, limit)
        )
    ]
    if ids:
        marks = ",".join("?" * len(ids))
        conn.execute(f"DELETE FROM history WHERE job_id IN ({marks})", ids)
        conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
    conn.execute(
        "DELETE FROM idempotency WHERE (tenant, key) IN (SELECT tenant, key FROM idempotency "
        "WHERE expires_at <= ? LIMIT ?)",
        (now, limit),
    )
    return len(ids)


def _claim_order(row: tuple[Any, ...]) -> tuple[int, float, str]:
    """Higher priority first, then earlier due time, then id (rows: id, priority, run_at...)."""
    return (-row[1], row[2], row[0])


def fetch(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(f"{SELECT_JOB} WHERE id = ?", (job_id,)).fetchone()
    return schema.row_to_job(row) if row is not None else None
