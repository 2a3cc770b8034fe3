"""SQLite schema and row mapping for the sqlite backend."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from offload.core.job import JobRecord, Transition
from offload.core.states import Reason, State
from offload.errors import ConfigurationError

SCHEMA_VERSION = 2

DDL = """
CREATE TABLE IF NOT EXISTS offload_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    args BLOB NOT NULL,
    kwargs BLOB NOT NULL,
    priority INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    losses INTEGER NOT NULL DEFAULT 0,
    run_at REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    token INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    lease_until REAL,
    progress REAL,
    progress_message TEXT,
    result BLOB,
    error BLOB,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    concurrency_key TEXT,
    tenant TEXT NOT NULL,
    meta BLOB NOT NULL,
    result_ttl REAL,
    expires_at REAL,
    capped INTEGER NOT NULL DEFAULT 0,
    cap INTEGER,
    key_cap INTEGER,
    rate REAL,
    key_rate REAL,
    reserved INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND losses = 0 AND capped = 0;
CREATE INDEX IF NOT EXISTS jobs_capped ON jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND losses = 0 AND capped = 1;
CREATE INDEX IF NOT EXISTS jobs_slots ON jobs (task, concurrency_key)
    WHERE status = 'running' AND capped = 1;
CREATE INDEX IF NOT EXISTS jobs_suspects ON jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND losses > 0;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (lease_until) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, id);
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_outcome ON jobs (status, finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled') AND expires_at IS NULL;
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (queue, finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    token INTEGER NOT NULL,
    worker_id TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS history_job ON history (job_id, seq);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    next_start REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    fingerprint TEXT,
    expires_at REAL NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
"""

JOB_COLUMNS = (
    "id, task, queue, status, args, kwargs, priority, attempts, losses, run_at, created_at, "
    "updated_at, started_at, finished_at, token, worker_id, lease_until, progress, "
    "progress_message, result, error, cancel_requested, idempotency_key, concurrency_key, "
    "tenant, meta"
)

HISTORY_INSERT = (
    "INSERT INTO history (job_id, at, from_status, to_status, reason, attempt, token, "
    "worker_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


#: What turns a database of one schema version into the next (run inside the creating
#: transaction, before the DDL's indexes are created).
MIGRATIONS = {
    1: "ALTER TABLE jobs ADD COLUMN result_ttl REAL; ALTER TABLE jobs ADD COLUMN expires_at REAL;"
    "ALTER TABLE jobs ADD COLUMN capped INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE jobs ADD COLUMN cap INTEGER; ALTER TABLE jobs ADD COLUMN key_cap INTEGER;"
    "ALTER TABLE jobs ADD COLUMN rate REAL; ALTER TABLE jobs ADD COLUMN key_rate REAL;"
    "ALTER TABLE jobs ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0;"
    "DROP INDEX IF EXISTS jobs_ready;",  # recreated without the capped jobs
}


def stored_version(conn: sqlite3.Connection) -> int | None:
    """The schema version the file says it has (None: no schema yet). Reads only: never
    waits for another process's write lock."""
    try:
        row = conn.execute("SELECT value FROM offload_meta WHERE key = 'schema'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else int(row[0])


def create_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the tables, in one transaction: safe when processes race to do it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'offload_meta'"
        ).fetchone()
        version = SCHEMA_VERSION
        if exists:
            row = conn.execute("SELECT value FROM offload_meta WHERE key = 'schema'").fetchone()
            version = int(row[0]) if row else SCHEMA_VERSION
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"database schema version {version} is newer than this offload "
                f"({SCHEMA_VERSION}); upgrade offload"
            )
        for old in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[old].split(";"):
                if statement.strip():
                    conn.execute(statement)
        for statement in DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT OR REPLACE INTO offload_meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _json(blob: bytes | None) -> Any:
    return None if blob is None else orjson.loads(blob)


def row_to_job(row: tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        id=row[0],
        task=row[1],
        queue=row[2],
        status=State(row[3]),
        args=orjson.loads(row[4]),
        kwargs=orjson.loads(row[5]),
        priority=row[6],
        attempts=row[7],
        losses=row[8],
        run_at=row[9],
        created_at=row[10],
        updated_at=row[11],
        started_at=row[12],
        finished_at=row[13],
        token=row[14],
        worker_id=row[15],
        lease_until=row[16],
        progress=row[17],
        progress_message=row[18],
        result=_json(row[19]),
        error=_json(row[20]),
        cancel_requested=bool(row[21]),
        idempotency_key=row[22],
        concurrency_key=row[23],
        tenant=row[24],
        meta=orjson.loads(row[25]),
    )


def row_to_transition(row: tuple[Any, ...]) -> Transition:
    return Transition(
        job_id=row[0],
        at=row[1],
        from_status=State(row[2]) if row[2] is not None else None,
        to_status=State(row[3]),
        reason=Reason(row[4]),
        attempt=row[5],
        token=row[6],
        worker_id=row[7],
        detail=row[8],
    )


def history_row(
    job: JobRecord,
    before: State | None,
    reason: Reason,
    at: float,
    detail: str | None = None,
    *,
    run: JobRecord | None = None,
) -> tuple[Any, ...]:
    """A history row for ``job`` (as it is after the move).

    A move out of running passes ``run``, the job as it was while running, so the entry names
    the run that ended: its attempt (before a release refunds it), token and worker.
    """
    run = run or job
    return (
        job.id,
        at,
        before.value if before is not None else None,
        job.status.value,
        reason.value,
        run.attempts,
        run.token,
        run.worker_id,
        detail,
    )


SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs"


def fetch(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    """The job with this id, or None."""
    row = conn.execute(f"{SELECT_JOB} WHERE id = ?", (job_id,)).fetchone()
    return row_to_job(row) if row is not None else None
