"""Storing new jobs: one plan that runs on the backend's pool or on a caller's connection.

:func:`submit_plan` needs nothing but a connection inside a transaction: run it with
:func:`offload.backends.postgres.plan.run_sync` or ``run_async`` on the caller's own connection
and the jobs exist only if that transaction commits. Its wake-up (``NOTIFY``) is delivered by
PostgreSQL at commit, so workers never see a job before it is visible.
"""

from __future__ import annotations

import orjson

from offload.backends._common import check_new_job, check_transition, submitted_record
from offload.backends.base import IDEMPOTENCY_WINDOW
from offload.backends.postgres import schema
from offload.backends.postgres.plan import Plan, Query, clock_plan
from offload.backends.postgres.single import one_statement, submit_one
from offload.core.job import JobRecord, NewJob
from offload.core.limits import Limits
from offload.core.states import Reason, State
from offload.errors import IdempotencyConflict

NO_LIMITS = Limits()
#: The jobs columns :func:`_row` fills, as SQL array types, in its order.
JOB_TYPES = [
    "text",
    "text",
    "text",
    "text",
    "bytea",
    "bytea",
    "integer",
    "float8",
    "float8",
    "float8",
    "text",
    "bytea",
    "text",
    "bytea",
    "float8",
    "boolean",
    "boolean",
    "integer",
    "integer",
    "float8",
    "float8",
]
FLOAT_COLUMNS = [i for i, kind in enumerate(JOB_TYPES) if kind == "float8"]
HISTORY_TYPES = ["text", "float8", "text", "text", "text", "integer", "bigint", "text", "text"]


class Names:
    """The statements of one schema, formatted once."""

    def __init__(self, schema_name: str, channel: str | None) -> None:
        s = schema.quoted(schema_name)
        self.s = s
        self.schema = schema_name
        self.channel = channel  # None: no NOTIFY (poll-only mode)
        self.select_job = f"SELECT {schema.JOB_COLUMNS} FROM {s}.jobs"
        self.insert_history = (
            f"INSERT INTO {s}.history ({schema.HISTORY_COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        )
        self.insert_job = (
            f"INSERT INTO {s}.jobs (id, task, queue, status, args, kwargs, priority, run_at, "
            "created_at, updated_at, idempotency_key, concurrency_key, tenant, meta, result_ttl, "
            "limited, capped, cap, key_cap, rate, key_rate) VALUES (%s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        )
        #: One job and its history row in one statement (one round trip: the usual submit).
        self.insert_one = f"WITH job AS ({self.insert_job}) {self.insert_history}"
        #: Many jobs and their history rows in one statement, one array per column.
        self.insert_many = (
            f"WITH job AS ({self.insert_job.split(' VALUES ')[0]} SELECT * FROM unnest("
            + ", ".join(f"%b::{kind}[]" for kind in JOB_TYPES)
            + f")) INSERT INTO {s}.history ({schema.HISTORY_COLUMNS}) SELECT * FROM unnest("
            + ", ".join(f"%b::{kind}[]" for kind in HISTORY_TYPES)
            + ")"
        )
        #: The clock and the wake-up in one round trip (NOTIFY is delivered at commit anyway).
        self.now_and_notify = (
            "SELECT extract(epoch FROM clock_timestamp())::double precision, pg_notify(%s, '')"
        )


def notify(names: Names) -> Plan[None]:
    """Wake idle workers once this transaction commits (nothing in poll-only mode)."""
    if names.channel is not None:
        yield Query("SELECT pg_notify(%s, '')", (names.channel,))


def wake_plan(names: Names) -> Plan[None]:
    """A NOTIFY in a transaction of its own that does not wait for its flush (a lost wake-up
    costs one poll, never a job)."""
    if names.channel is not None:
        yield Query(
            "SELECT set_config('synchronous_commit', 'off', true), pg_notify(%s, '')",
            (names.channel,),
        )


def submit_plan(
    names: Names, fixed_now: float | None, jobs: list[NewJob], *, wake: bool = True
) -> Plan[list[JobRecord]]:
    """Store ``jobs`` (all or none, with the transaction) and return them as stored; with
    ``wake``, the transaction also sends the NOTIFY (``wake=False`` leaves it to the caller,
    after the commit: see ``PostgresBackend.submit``). One job without an idempotency key (the
    usual submit) is one statement, :func:`.single.submit_one`."""
    if one_statement(jobs):
        return (yield from submit_one(names.schema, names.channel, fixed_now, jobs[0], wake=wake))
    if wake and fixed_now is None and names.channel is not None:
        rows = yield Query(names.now_and_notify, (names.channel,))
        return (yield from insert_jobs(names, float(rows[0][0]), jobs))
    now = yield from clock_plan(fixed_now)
    stored = yield from insert_jobs(names, now, jobs)
    if wake:
        yield from notify(names)
    return stored


def submit_many_plan(
    names: Names, fixed_now: float | None, submits: list[list[NewJob]]
) -> Plan[list[list[JobRecord]]]:
    """Several callers' submits in one transaction (group commit, see :mod:`.group`): all
    their jobs are written together and each caller gets back its own records. The wake-up
    is the caller's, after the commit."""
    now = yield from clock_plan(fixed_now)
    stored = yield from insert_jobs(names, now, [new for jobs in submits for new in jobs])
    out: list[list[JobRecord]] = []
    start = 0
    for jobs in submits:
        out.append(stored[start : start + len(jobs)])
        start += len(jobs)
    return out


def insert_jobs(names: Names, now: float, jobs: list[NewJob]) -> Plan[list[JobRecord]]:
    for new in jobs:  # before the first write: no bad number can half-apply a submit
        check_new_job(new)
    stored: list[JobRecord] = []
    rows: list[tuple[object, ...]] = []
    history: list[tuple[object, ...]] = []
    for new in jobs:
        if new.idempotency_key is not None and rows:  # a key may name a job of this submit
            yield from _flush(names, rows, history)
        existing = yield from idempotent_match(names, new, now)
        if existing is not None:
            stored.append(existing)
            continue
        run_at = new.run_at if new.run_at is not None else now + max(0.0, new.delay)
        status = State.SCHEDULED if run_at > now else State.QUEUED
        check_transition(new.id, None, status)
        rows.append(_row(new, status, run_at, now))
        record = submitted_record(new, status, run_at, now)
        history.append(schema.history_row(record, None, Reason.SUBMITTED, now))
        if new.idempotency_key is not None:
            yield Query(
                f"INSERT INTO {names.s}.idempotency VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant, key) DO UPDATE SET job_id = excluded.job_id, "
                "fingerprint = excluded.fingerprint, expires_at = excluded.expires_at",
                (
                    new.tenant,
                    new.idempotency_key,
                    new.id,
                    new.fingerprint,
                    now + IDEMPOTENCY_WINDOW,
                ),
            )
        stored.append(record)
    yield from _flush(names, rows, history)
    return stored


def _flush(
    names: Names, rows: list[tuple[object, ...]], history: list[tuple[object, ...]]
) -> Plan[None]:
    if len(rows) == 1:  # one job (the usual submit): one statement, no executemany pipeline
        yield Query(names.insert_one, (*rows[0], *history[0]))
    elif rows:  # many (a bulk submit, a group commit): still one statement
        columns = [list(column) for column in zip(*rows, strict=True)]
        for i in FLOAT_COLUMNS:  # an int among floats would make psycopg send a bigint[]
            columns[i] = [None if v is None else float(v) for v in columns[i]]
        logged = [list(column) for column in zip(*history, strict=True)]
        logged[1] = [float(v) for v in logged[1]]
        yield Query(names.insert_many, (*columns, *logged))
    rows.clear()
    history.clear()


def idempotent_match(names: Names, new: NewJob, now: float) -> Plan[JobRecord | None]:
    """The live job ``new``'s idempotency key names, if any. Takes a transaction-level lock
    on the key first: two transactions submitting one key never both insert."""
    if new.idempotency_key is None:
        return None
    yield Query(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (f"offload-key:{names.schema}:{new.tenant}:{new.idempotency_key}",),
    )
    rows = yield Query(
        f"SELECT i.job_id, i.fingerprint, j.id FROM {names.s}.idempotency i "
        f"LEFT JOIN {names.s}.jobs j ON j.id = i.job_id "
        "WHERE i.tenant = %s AND i.key = %s AND i.expires_at > %s",
        (new.tenant, new.idempotency_key, now),
    )
    if not rows or rows[0][2] is None:  # none, or pruned: the key protects nothing
        return None
    if rows[0][1] != new.fingerprint:
        raise IdempotencyConflict(new.idempotency_key, rows[0][0])
    found = yield Query(f"{names.select_job} WHERE id = %s", (rows[0][0],))
    return schema.row_to_job(found[0])


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
        schema.encode_key(new.concurrency_key),
        new.tenant,
        orjson.dumps(new.meta),
        new.result_ttl,
        lim.any,
        lim.capped,
        lim.concurrency,
        lim.key_concurrency,
        lim.rate,
        lim.key_rate,
    )
