"""The SQLite submit: new jobs (or the job an idempotency key already names) in one
transaction, each with its job row, its first history row and its key."""

from __future__ import annotations

import sqlite3

import orjson

from offload.backends._common import check_new_job, check_transition, submitted_record
from offload.backends.base import IDEMPOTENCY_WINDOW
from offload.backends.sqlite import schema
from offload.core.job import JobRecord, NewJob
from offload.core.limits import Limits
from offload.core.states import Reason, State
from offload.errors import IdempotencyConflict

NO_LIMITS = Limits()
INSERT_JOB = (
    "INSERT INTO jobs (id, task, queue, status, args, kwargs, priority, run_at, created_at, "
    "updated_at, idempotency_key, concurrency_key, tenant, meta, result_ttl, capped, cap, "
    "key_cap, rate, key_rate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


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
        conn.execute(INSERT_JOB, _row(new, status, run_at, now))
        record = submitted_record(new, status, run_at, now)
        conn.execute(schema.HISTORY_INSERT, schema.history_row(record, None, Reason.SUBMITTED, now))
        if new.idempotency_key is not None:
            key = (new.tenant, new.idempotency_key, new.id, new.fingerprint)
            conn.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                (*key, now + IDEMPOTENCY_WINDOW),
            )
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
    job = schema.fetch(conn, row[0])
    if job is None:  # pruned: the key no longer protects anything, whatever the request
        return None
    if row[1] != new.fingerprint:
        raise IdempotencyConflict(new.idempotency_key, row[0])
    return job


def _row(new: NewJob, status: State, run_at: float, now: float) -> tuple[object, ...]:
    lim = new.limits or NO_LIMITS
    return (
        new.id,
        new.task,
        new.queue,
        status.value,
        orjson.dumps(new.args),
        orjson.dumps(new.kwargs),
        new.priority,
        run_at,
        now,
        now,
        new.idempotency_key,
        new.concurrency_key,
        new.tenant,
        orjson.dumps(new.meta),
        new.result_ttl,
        int(lim.capped),
        lim.concurrency,
        lim.key_concurrency,
        lim.rate,
        lim.key_rate,
    )
