"""The postgres backend's transactions after the claim: one plan per state change.

Each plan runs inside one transaction with the backend's ``now``. Every write to a running job
is conditional on its lease (id, fencing token, state running, lease not expired) in the
statement itself: under READ COMMITTED a concurrent writer's update is waited for and the
condition checked again on the new row, so a stale worker can never overwrite a newer claim.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from offload.backends._common import check_transition
from offload.backends.base import CANCEL_INSTEAD
from offload.backends.postgres import retention, schema
from offload.backends.postgres.claim import capped_ready_sql
from offload.backends.postgres.plan import Plan, Query
from offload.backends.postgres.submit import Names, insert_jobs, notify
from offload.core.job import JobRecord, Lease, NewJob, RenewResult, WorkerInfo
from offload.core.retention import RetentionPolicy
from offload.core.states import ACTIVE_STATES, TERMINAL_STATES, Reason, State
from offload.errors import InvalidTransition, JobNotFound, LeaseLost

OWNED = "id = %(id)s AND token = %(token)s AND status = 'running' AND lease_until > %(now)s"
#: Set with every move to a final state: when prune may delete the job (never without a ttl).
EXPIRES = "expires_at = %(now)s + result_ttl"
#: What a move to a final state sets besides the status.
FINISH = (
    f"result = %(result)s, error = %(error)s, lease_until = NULL, finished_at = %(now)s, {EXPIRES}"
)


def renew(
    names: Names, now: float, leases: list[Lease], lease_seconds: float | None
) -> Plan[RenewResult]:
    ids = [lease.job_id for lease in leases]
    held_by = "unnest(%(ids)s::text[], %(tokens)s::bigint[]) AS l(id, token)"
    where = "j.id = l.id AND j.token = l.token AND j.status = 'running' AND j.lease_until > %(now)s"
    params = {"ids": ids, "tokens": [lease.token for lease in leases], "now": now}
    if lease_seconds is None:
        rows = yield Query(
            f"SELECT j.id, j.cancel_requested FROM {names.s}.jobs j, {held_by} WHERE {where}",
            params,
        )
    else:
        rows = yield Query(
            f"UPDATE {names.s}.jobs j SET lease_until = %(until)s FROM {held_by} "
            f"WHERE {where} RETURNING j.id, j.cancel_requested",
            {**params, "until": now + lease_seconds},
        )
    held = {row[0] for row in rows}
    cancel = {row[0] for row in rows if row[1]}
    return RenewResult(frozenset(set(ids) - held), frozenset(cancel))


def progress(
    names: Names, now: float, lease: Lease, fraction: float | None, message: str | None
) -> Plan[None]:
    rows = yield Query(
        f"UPDATE {names.s}.jobs SET progress = %(p)s, progress_message = %(m)s, "
        f"updated_at = %(now)s WHERE {OWNED} RETURNING id",
        {
            "p": fraction,
            "m": schema.clean_text(message),
            "now": now,
            "id": lease.job_id,
            "token": lease.token,
        },
    )
    if not rows:
        raise LeaseLost(lease.job_id, lease.token)


def move(
    names: Names,
    now: float,
    lease: Lease,
    target: State,
    reason: Reason,
    sets: str,
    params: dict[str, Any],
    detail: str | None = None,
) -> Plan[None]:
    """Move a job the caller holds a lease on out of running; a job that would run again but
    whose cancel was requested is cancelled instead."""
    s = names.s
    keys = {"now": now, "id": lease.job_id, "token": lease.token}
    if target in TERMINAL_STATES:  # one statement: worker, attempt and token stay as they are
        yield from _finish(names, keys, target, reason, sets, params, detail)
        return
    rows = yield Query(f"{names.select_job} WHERE {OWNED} FOR UPDATE", keys)
    if not rows:
        raise LeaseLost(lease.job_id, lease.token)
    run = schema.row_to_job(rows[0])
    if run.cancel_requested and target in ACTIVE_STATES:
        target, reason, detail = State.CANCELLED, Reason.CANCELLED, CANCEL_INSTEAD
        sets, params = f"lease_until = NULL, finished_at = %(now)s, {EXPIRES}", {}
    check_transition(lease.job_id, State.RUNNING, target)
    rows = yield Query(
        f"UPDATE {s}.jobs SET status = %(target)s, updated_at = %(now)s, {sets} "
        f"WHERE id = %(id)s RETURNING {schema.JOB_COLUMNS}, capped",
        {**params, **keys, "target": target.value},
    )
    job = schema.row_to_job(rows[0])
    yield Query(
        names.insert_history, schema.history_row(job, State.RUNNING, reason, now, detail, run=run)
    )
    if target not in TERMINAL_STATES or rows[0][26]:  # new work, or a freed slot
        yield from notify(names)


def _finish(
    names: Names,
    keys: dict[str, Any],
    target: State,
    reason: Reason,
    sets: str,
    params: dict[str, Any],
    detail: str | None,
) -> Plan[None]:
    """running -> a final state, its history row and (for a capped job, whose slot it frees)
    the wake-up, in one statement conditional on the lease."""
    check_transition(keys["id"], State.RUNNING, target)
    rows = yield Query(
        finish_sql(names, sets),
        {
            **params,
            **keys,
            "target": target.value,
            "reason": reason.value,
            "detail": schema.clean_text(detail),
            "channel": names.channel,
        },
    )
    if not rows:
        raise LeaseLost(keys["id"], keys["token"])


def finish_sql(names: Names, sets: str) -> str:
    """The statement of :func:`_finish` (one row per job moved: none when the lease is lost)."""
    s = names.s
    wake = "NULL" if names.channel is None else "pg_notify(%(channel)s, '')::text"
    return (
        f"WITH done AS (UPDATE {s}.jobs SET status = %(target)s, updated_at = %(now)s, {sets} "
        f"WHERE {OWNED} RETURNING id, attempts, token, worker_id, capped), "
        f"logged AS (INSERT INTO {s}.history ({schema.HISTORY_COLUMNS}) SELECT id, %(now)s, "
        "'running', %(target)s, %(reason)s, attempts, token, worker_id, %(detail)s FROM done) "
        f"SELECT CASE WHEN capped THEN {wake} END FROM done"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """One running job's move to a final state, as :func:`finish_many` takes it."""

    lease: Lease
    target: State
    reason: Reason
    result: bytes | None = None
    error: bytes | None = None
    detail: str | None = None


def finish_many(names: Names, now: float, items: list[Finish]) -> Plan[list[LeaseLost | None]]:
    """Several jobs' moves to a final state in one statement per round (group commit, see
    :mod:`.group`), each still conditional on its own lease: a lost lease fails only its own
    item (its :class:`LeaseLost` in the result). A job named twice goes in a later round,
    as if the moves came one after the other."""
    for item in items:
        check_transition(item.lease.job_id, State.RUNNING, item.target)
    lost: list[LeaseLost | None] = [None] * len(items)
    todo = list(range(len(items)))
    while todo:
        ids: dict[str, int] = {}  # job id -> its item in this round
        later: list[int] = []
        for i in todo:
            job_id = items[i].lease.job_id
            if job_id in ids:
                later.append(i)
            else:
                ids[job_id] = i
        batch = [items[i] for i in ids.values()]
        rows = yield Query(finish_many_sql(names), finish_params(names, now, batch))
        done = {row[0] for row in rows}
        for job_id, i in ids.items():
            if job_id not in done:
                lost[i] = LeaseLost(job_id, items[i].lease.token)
        todo = later
    return lost


def finish_params(names: Names, now: float, batch: list[Finish]) -> dict[str, Any]:
    return {
        "now": now,
        "channel": names.channel,
        "ids": [f.lease.job_id for f in batch],
        "tokens": [f.lease.token for f in batch],
        "targets": [f.target.value for f in batch],
        "reasons": [f.reason.value for f in batch],
        "results": [f.result for f in batch],
        "errors": [f.error for f in batch],
        "details": [schema.clean_text(f.detail) for f in batch],
    }


def finish_many_sql(names: Names) -> str:
    s = names.s
    wake = "NULL" if names.channel is None else "pg_notify(%(channel)s, '')::text"
    given = (
        "unnest(%(ids)b::text[], %(tokens)b::bigint[], %(targets)b::text[], "
        "%(reasons)b::text[], %(results)b::bytea[], %(errors)b::bytea[], %(details)b::text[]) "
        "AS i(id, token, target, reason, result, error, detail)"
    )
    return (
        f"WITH done AS (UPDATE {s}.jobs j SET status = i.target, updated_at = %(now)s, "
        "result = i.result, error = i.error, lease_until = NULL, finished_at = %(now)s, "
        f"expires_at = %(now)s + j.result_ttl FROM {given} WHERE j.id = i.id "
        "AND j.token = i.token AND j.status = 'running' AND j.lease_until > %(now)s "
        "RETURNING j.id, j.attempts, j.token, j.worker_id, j.capped, i.target, i.reason, "
        f"i.detail), logged AS (INSERT INTO {s}.history ({schema.HISTORY_COLUMNS}) SELECT id, "
        "%(now)s, 'running', target, reason, attempts, token, worker_id, detail FROM done) "
        f"SELECT id, CASE WHEN capped THEN {wake} END FROM done"
    )


def succeed_then(
    names: Names, now: float, lease: Lease, sets: str, params: dict[str, Any], then: list[NewJob]
) -> Plan[None]:
    """A workflow step's success and the submit of what follows it, in one transaction.
    Jobs of ``then`` that exist already are left as they are."""
    yield from move(names, now, lease, State.SUCCEEDED, Reason.SUCCEEDED, sets, params)
    have = yield Query(
        f"SELECT id FROM {names.s}.jobs WHERE id = ANY(%s)", ([job.id for job in then],)
    )
    known = {row[0] for row in have}
    yield from insert_jobs(names, now, [job for job in then if job.id not in known])
    yield from notify(names)


def cancel(names: Names, now: float, job_id: str) -> Plan[JobRecord]:
    rows = yield Query(f"{names.select_job} WHERE id = %s FOR UPDATE", (job_id,))
    if not rows:
        raise JobNotFound(job_id)
    job = schema.row_to_job(rows[0])
    if job.status in TERMINAL_STATES:
        raise InvalidTransition(job_id, job.status.value, State.CANCELLED.value)
    if job.status is State.RUNNING:
        sets = "cancel_requested = true, updated_at = %(now)s"
    else:
        sets = f"status = 'cancelled', finished_at = %(now)s, updated_at = %(now)s, {EXPIRES}"
    rows = yield Query(
        f"UPDATE {names.s}.jobs SET {sets} WHERE id = %(id)s RETURNING {schema.JOB_COLUMNS}",
        {"now": now, "id": job_id},
    )
    updated = schema.row_to_job(rows[0])
    if updated.status is State.CANCELLED:
        yield Query(
            names.insert_history, schema.history_row(updated, job.status, Reason.CANCELLED, now)
        )
    return updated


def reap(names: Names, now: float, limit: int, max_losses: int) -> Plan[int]:
    """Return jobs whose lease expired to the queue, or fail them as worker_lost."""
    rows = yield Query(
        f"{names.select_job} WHERE status = 'running' AND lease_until <= %s "
        "ORDER BY lease_until LIMIT %s FOR UPDATE SKIP LOCKED",
        (now, limit),
    )
    for row in rows:
        yield from _reap_one(names, now, schema.row_to_job(row), max_losses)
    if rows:
        yield from notify(names)
    return len(rows)


def _reap_one(names: Names, now: float, job: JobRecord, max_losses: int) -> Plan[None]:
    losses = job.losses + 1
    params: dict[str, Any] = {"now": now, "losses": losses, "id": job.id, "token": job.token}
    if job.cancel_requested:
        sets = f"status = 'cancelled', lease_until = NULL, finished_at = %(now)s, {EXPIRES}"
        reason, detail = Reason.CANCELLED, CANCEL_INSTEAD
    elif losses >= max_losses:
        detail = f"the job's worker was lost {losses} times"
        params["error"] = orjson.dumps({"type": "WorkerLost", "message": detail})
        sets = "status = 'failed', error = %(error)s, lease_until = NULL, "
        sets += f"finished_at = %(now)s, {EXPIRES}"
        reason = Reason.WORKER_LOST
    else:
        sets = "status = 'queued', worker_id = NULL, lease_until = NULL, run_at = %(now)s"
        reason, detail = Reason.LEASE_EXPIRED, None
    moved_rows = yield Query(
        f"UPDATE {names.s}.jobs SET {sets}, losses = %(losses)s, updated_at = %(now)s "
        f"WHERE id = %(id)s AND token = %(token)s RETURNING {schema.JOB_COLUMNS}",
        params,
    )
    moved = schema.row_to_job(moved_rows[0])
    check_transition(job.id, State.RUNNING, moved.status)
    yield Query(
        names.insert_history, schema.history_row(moved, State.RUNNING, reason, now, detail, run=job)
    )


def reclaim_dead(names: Names, now: float, grace: float, limit: int, max_losses: int) -> Plan[int]:
    """End the leases of running jobs claimed at least ``grace`` seconds ago whose worker has
    no live heartbeat, then reap them (see the SQLite backend for why ``grace``)."""
    s = names.s
    ended = yield Query(
        f"UPDATE {s}.jobs SET lease_until = %(now)s WHERE id IN (SELECT id FROM {s}.jobs WHERE "
        "status = 'running' AND lease_until > %(now)s AND started_at <= %(since)s AND NOT EXISTS "
        f"(SELECT 1 FROM {s}.workers w WHERE w.id = jobs.worker_id AND w.expires_at > %(now)s) "
        "LIMIT %(limit)s FOR UPDATE SKIP LOCKED) RETURNING id",
        {"now": now, "since": now - grace, "limit": limit},
    )
    if not ended:
        return 0
    return (yield from reap(names, now, limit, max_losses))


def prune(names: Names, now: float, limit: int, policy: RetentionPolicy | None = None) -> Plan[int]:
    """Delete up to ``limit`` ended jobs past their expiry or their retention, their history,
    and stale idempotency keys: bounded batches, so a backlog never becomes one long
    transaction."""
    s = names.s
    rows = yield Query(
        f"SELECT id FROM {s}.jobs WHERE expires_at <= %s ORDER BY expires_at LIMIT %s "
        "FOR UPDATE SKIP LOCKED",
        (now, limit),
    )
    ids = [row[0] for row in rows]
    yield from retention.delete(s, ids)
    pruned = len(ids)
    if policy is not None and pruned < limit:
        pruned += yield from retention.prune(s, now, limit - pruned, policy)
    yield Query(
        f"DELETE FROM {s}.idempotency WHERE (tenant, key) IN (SELECT tenant, key FROM "
        f"{s}.idempotency WHERE expires_at <= %s LIMIT %s)",
        (now, limit),
    )
    return pruned


def heartbeat(names: Names, now: float, worker: WorkerInfo, ttl: float) -> Plan[None]:
    """Upsert a worker's heartbeat (or drop it when ``ttl`` is 0); forget expired workers."""
    s = names.s
    yield Query(f"DELETE FROM {s}.workers WHERE expires_at <= %s OR id = %s", (now, worker.id))
    if ttl > 0:
        info = dataclasses.replace(worker, last_seen=now)
        yield Query(
            f"INSERT INTO {s}.workers VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE "
            "SET info = excluded.info, expires_at = excluded.expires_at",
            (worker.id, orjson.dumps(dataclasses.asdict(info)), now + ttl),
        )


def live_workers(names: Names, now: float) -> Plan[list[WorkerInfo]]:
    rows = yield Query(f"SELECT info FROM {names.s}.workers WHERE expires_at > %s", (now,))
    workers = [WorkerInfo(**orjson.loads(row[0])) for row in rows]
    return sorted(workers, key=lambda w: (w.started_at, w.id))


def fetch(names: Names, job_id: str) -> Plan[JobRecord | None]:
    rows = yield Query(f"{names.select_job} WHERE id = %s", (job_id,))
    return schema.row_to_job(rows[0]) if rows else None


def probe(names: Names, now: float, queues: list[str], timeout: float) -> Plan[float]:
    """Seconds an idle worker may sleep: 0 when work is ready, else until the next due job."""
    s = names.s
    rows = yield Query(
        f"SELECT EXISTS (SELECT 1 FROM {s}.jobs WHERE status = 'queued' AND queue = ANY(%(q)s) "
        "AND losses = 0 AND NOT capped), "
        f"(SELECT min(run_at) FROM {s}.jobs WHERE status = 'scheduled')",
        {"q": queues},
    )
    ready, first = rows[0]
    if ready:
        return 0.0
    capped = yield Query(capped_ready_sql(names), {"q": queues})
    if capped:
        return 0.0
    return timeout if first is None else min(timeout, max(0.0, first - now))
