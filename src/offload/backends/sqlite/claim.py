"""The SQLite backend's claim: due jobs to running, within their queues' room and limits.

Run by the writer thread inside ``BEGIN IMMEDIATE``, like every function of :mod:`.tx`: it
promotes due scheduled jobs, picks candidates per queue (ready jobs, ready jobs of limited
tasks whose slots have room, suspects), lets the gate decide on the limited ones (start now,
defer to a reserved start, or wait for a slot), then starts the chosen under new leases.
"""

from __future__ import annotations

import sqlite3
from itertools import islice
from typing import Any

from offload.backends._common import check_transition
from offload.backends._gate import Gate, Slot
from offload.backends.sqlite import schema
from offload.core.job import JobRecord
from offload.core.limits import Limits
from offload.core.states import Reason, State

#: Jobs of limited tasks with a free slot one claim considers beyond what it wants, per queue
#: (a later candidate may still find its slot taken by an earlier one of the same claim).
CAPPED_SCAN = 64
#: A candidate row: id, priority, run_at, losses, queue, task, concurrency_key, cap, key_cap,
#: rate, key_rate, reserved.
PICK = (
    "SELECT id, priority, run_at, losses, queue, task, concurrency_key, cap, key_cap, rate, "
    "key_rate, reserved FROM jobs WHERE status = 'queued' AND queue = ? AND {} "
    "ORDER BY priority DESC, run_at, id LIMIT ?"
)
Row = tuple[Any, ...]

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
    patient = now if idle else now - lease_seconds  # suspects due by then may be taken
    gate = Gate(now, lambda slot: _running_in(conn, slot), lambda b: _next_start(conn, b))
    candidates, suspects = _candidates(conn, gate, room, limit, patient)
    chosen, deferred = _choose(gate, room, limit, candidates, suspects)
    if gate.buckets:
        conn.executemany("INSERT OR REPLACE INTO buckets VALUES (?, ?)", gate.buckets.items())
    if deferred:
        _defer(conn, now, deferred)
    if not chosen:
        return []
    return _start(conn, now, worker_id, lease_seconds, chosen)


def _candidates(
    conn: sqlite3.Connection, gate: Gate, room: dict[str, int], limit: int, patient: float
) -> tuple[list[Row], list[Row]]:
    """Per queue, the first ready jobs and the first suspect due by ``patient``, each list in
    claim order."""
    candidates: list[Row] = []
    suspects: list[Row] = []
    for queue, cap in room.items():
        wanted = min(cap, limit)
        candidates += conn.execute(PICK.format("losses = 0 AND capped = 0"), (queue, wanted))
        # Jobs whose slot is full are passed over, however many: they never hide the rest.
        capped = conn.execute(PICK.format(f"losses = 0 AND capped = 1 AND {HAS_ROOM}"), (queue, -1))
        candidates += islice((r for r in capped if not _full(gate, r)), wanted + CAPPED_SCAN)
        capped.close()
        suspects += conn.execute(PICK.format("losses > 0 AND run_at <= ?"), (queue, patient, 1))
    candidates.sort(key=_claim_order)
    suspects.sort(key=_claim_order)
    return candidates, suspects


def _choose(
    gate: Gate, room: dict[str, int], limit: int, candidates: list[Row], suspects: list[Row]
) -> tuple[list[str], list[tuple[float, str]]]:
    """The ids to start now, and the (start, id) of the rate-limited jobs to defer."""
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
    return chosen, deferred


def _start(
    conn: sqlite3.Connection, now: float, worker_id: str, lease_seconds: float, chosen: list[str]
) -> list[JobRecord]:
    """queued -> running under new leases, in the order chosen."""
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


def _full(gate: Gate, row: Row) -> bool:
    return gate.full(row[5], row[6], Limits(row[7], row[8], row[9], row[10]))


def _gate(gate: Gate, row: Row, chosen: list[str], deferred: list[tuple[float, str]]) -> bool:
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


def _claim_order(row: Row) -> tuple[int, float, str]:
    """Higher priority first, then earlier due time, then id (rows: id, priority, run_at...)."""
    return (-row[1], row[2], row[0])
