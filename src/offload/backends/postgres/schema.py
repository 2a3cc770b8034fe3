"""PostgreSQL schema, versioned migrations and row mapping for the postgres backend.

Everything lives in one Postgres schema of its own (``offload`` unless the URL says
``?schema=``). Migrations are numbered SQL scripts; :func:`migrate` applies the missing ones in
one transaction under a transaction-level advisory lock, so processes that start together wait
for each other instead of racing (the second finds the work done). ``offload migrate --dry-run``
prints :func:`migration_sql` for teams that apply DDL themselves.

Times are epoch seconds in ``double precision`` (exactly the floats the Python side uses);
JSON values are orjson bytes in ``bytea`` (kept byte for byte, NUL characters included, which
``jsonb`` refuses); the concurrency key is ``bytea`` too, since a key may hold any character.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from offload.backends.postgres.retention import INDEXES
from offload.core.job import JobRecord, Transition
from offload.core.states import Reason, State
from offload.errors import ConfigurationError

DEFAULT_SCHEMA = "offload"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: Migration n turns a schema at version n - 1 into version n. ``{s}`` is the quoted schema.
MIGRATIONS: tuple[str, ...] = (
    """
CREATE TABLE {s}.jobs (
    id text COLLATE "C" PRIMARY KEY,
    task text NOT NULL,
    queue text NOT NULL,
    status text NOT NULL,
    args bytea NOT NULL,
    kwargs bytea NOT NULL,
    priority integer NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    losses integer NOT NULL DEFAULT 0,
    run_at double precision NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    token bigint NOT NULL DEFAULT 0,
    worker_id text,
    lease_until double precision,
    progress double precision,
    progress_message text,
    result bytea,
    error bytea,
    cancel_requested boolean NOT NULL DEFAULT false,
    idempotency_key text,
    concurrency_key bytea,
    tenant text NOT NULL,
    meta bytea NOT NULL,
    result_ttl double precision,
    expires_at double precision,
    limited boolean NOT NULL DEFAULT false,
    capped boolean NOT NULL DEFAULT false,
    cap integer,
    key_cap integer,
    rate double precision,
    key_rate double precision,
    reserved boolean NOT NULL DEFAULT false
) WITH (
    -- room on each page for the new version of a row (fewer pages touched per update), and a
    -- vacuum after 1% of the rows changed instead of the default 20%: a queue table is hot
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02
);
CREATE INDEX jobs_ready ON {s}.jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND losses = 0 AND NOT limited;
CREATE INDEX jobs_limited ON {s}.jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND limited;
CREATE INDEX jobs_suspects ON {s}.jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued' AND losses > 0;
CREATE INDEX jobs_slots ON {s}.jobs (task, concurrency_key)
    WHERE status = 'running' AND capped;
CREATE INDEX jobs_due ON {s}.jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX jobs_leases ON {s}.jobs (lease_until) WHERE status = 'running';
CREATE INDEX jobs_created ON {s}.jobs (created_at DESC, id DESC);
CREATE INDEX jobs_status_created ON {s}.jobs (status, created_at DESC, id DESC);
CREATE INDEX jobs_expiry ON {s}.jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE {s}.history (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id text COLLATE "C" NOT NULL,
    at double precision NOT NULL,
    from_status text,
    to_status text NOT NULL,
    reason text NOT NULL,
    attempt integer NOT NULL,
    token bigint NOT NULL,
    worker_id text,
    detail text
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
CREATE INDEX history_job ON {s}.history (job_id, seq);
CREATE TABLE {s}.workers (
    id text PRIMARY KEY,
    info bytea NOT NULL,
    expires_at double precision NOT NULL
);
CREATE TABLE {s}.buckets (name bytea PRIMARY KEY, next_start double precision NOT NULL);
CREATE TABLE {s}.idempotency (
    tenant text NOT NULL,
    key text NOT NULL,
    job_id text NOT NULL,
    fingerprint text,
    expires_at double precision NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_expiry ON {s}.idempotency (expires_at);
-- The row every claim of limited jobs locks first: caps and rate buckets are then counted
-- and written by one claim at a time, across all workers.
CREATE TABLE {s}.limits_lock (id integer PRIMARY KEY);
INSERT INTO {s}.limits_lock VALUES (1);
""",
    INDEXES,  # 2: the partial indexes of ended jobs that retention reads
)
SCHEMA_VERSION = len(MIGRATIONS)

JOB_COLUMNS = (
    "id, task, queue, status, args, kwargs, priority, attempts, losses, run_at, created_at, "
    "updated_at, started_at, finished_at, token, worker_id, lease_until, progress, "
    "progress_message, result, error, cancel_requested, idempotency_key, concurrency_key, "
    "tenant, meta"
)
HISTORY_COLUMNS = "job_id, at, from_status, to_status, reason, attempt, token, worker_id, detail"


def check_schema_name(name: str) -> str:
    """The schema name, refused unless it is a plain lower-case identifier."""
    if not _NAME.match(name):
        raise ConfigurationError(
            f"PostgreSQL schema name {name!r} must be 1 to 63 lower-case letters, digits or "
            "underscores, not starting with a digit"
        )
    return name


def quoted(name: str) -> str:
    return f'"{check_schema_name(name)}"'


def lock_key(schema: str) -> str:
    """The text whose hash is the schema's migration advisory lock."""
    return f"offload-migrate:{schema}"


def migration_steps(schema: str, since: int = 0) -> list[str]:
    """The scripts that bring ``schema`` from version ``since`` to :data:`SCHEMA_VERSION`
    (run them in one transaction holding the advisory lock of :func:`lock_key`)."""
    s = quoted(schema)
    steps = [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL)",
    ]
    for version in range(since + 1, SCHEMA_VERSION + 1):
        steps.append(f"-- migration {version}\n" + MIGRATIONS[version - 1].format(s=s).strip())
    steps.append(f"DELETE FROM {s}.schema_version")
    steps.append(f"INSERT INTO {s}.schema_version VALUES ({SCHEMA_VERSION})")
    return steps


def migration_sql(schema: str, since: int = 0) -> str:
    """The SQL that brings ``schema`` from version ``since`` to :data:`SCHEMA_VERSION`, as one
    transaction under the same advisory lock the backend takes (safe to run by hand)."""
    lock = f"SELECT pg_advisory_xact_lock(hashtextextended('{lock_key(schema)}', 0))"
    steps = ["BEGIN", lock, *migration_steps(schema, since), "COMMIT"]
    return "".join(f"{step.rstrip(';')};\n" for step in steps)


def version_sql(schema: str) -> str:
    """A query for the stored version (fails when the schema has no version table yet)."""
    return f"SELECT max(version) FROM {quoted(schema)}.schema_version"


def check_version(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"database schema version {version} is newer than this offload "
            f"({SCHEMA_VERSION}); upgrade offload"
        )


def _json(blob: bytes | None) -> Any:
    return None if blob is None else orjson.loads(blob)


def encode_key(key: str | None) -> bytes | None:
    return None if key is None else key.encode("utf-8", "surrogatepass")


def clean_text(text: str | None) -> str | None:
    """Free text for a ``text`` column: PostgreSQL refuses NUL characters in text."""
    return None if text is None else text.replace("\0", "\ufffd")


def row_to_job(row: tuple[Any, ...]) -> JobRecord:
    key = row[23]
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
        concurrency_key=None if key is None else bytes(key).decode("utf-8", "surrogatepass"),
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
    """A history row for ``job`` (as it is after the move); a move out of running passes
    ``run``, the job as it ran, so the entry names the run that ended."""
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
        clean_text(detail),
    )
