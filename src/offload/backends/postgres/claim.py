"""Claims on PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so workers never wait for each other.

A claim first promotes due scheduled jobs, in one statement that also reads the clock and
whether a limited job of the claimed queues is queued. When none is, the claim is one more
statement: per queue, the first due jobs are locked with ``SKIP LOCKED`` (a row another claim
holds is passed over, never waited for), the first ``limit`` in claim order are moved to
running under new leases, and their history is written, all in one
``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``. A suspect (a job whose
worker vanished) that comes first is taken alone, as the contract says.

Jobs of limited tasks (concurrency caps, rate limits) need counting across every worker: such a
claim first locks the one row of ``limits_lock``, so claims of limited jobs run one at a time
and each counts the running jobs and reads the rate buckets that the previous one committed;
it decides with :class:`offload.backends._gate.Gate`, exactly as SQLite does. Claims of
unlimited jobs never take that lock. Finishing a job only lowers a count, so it needs no lock.
"""

from __future__ import annotations

from typing import Any

from offload.backends._common import check_transition
from offload.backends._gate import Gate
from offload.backends.postgres import schema
from offload.backends.postgres.plan import Plan, Query, Rows, clock_plan
from offload.backends.postgres.submit import Names
from offload.core.job import JobRecord
from offload.core.limits import Limits
from offload.core.states import Reason, State

#: Limited jobs with a free slot one claim considers beyond what it wants, per queue.
CAPPED_SCAN = 64
#: Capped candidates read per round trip while looking for ones whose slot is free.
CAPPED_PAGE = 256
ORDER = "priority DESC, run_at, id"
PICK = (
    "id, priority, run_at, losses, queue, task, concurrency_key, cap, key_cap, rate, key_rate, "
    "reserved"
)


def claim_plan(
    names: Names,
    fixed_now: float | None,
    worker_id: str,
    room: dict[str, int],
    limit: int,
    lease_seconds: float,
    idle: bool,
) -> Plan[list[JobRecord]]:
    """Claim up to ``limit`` jobs; ``fixed_now`` is the backend's clock if it has one (tests),
    else None: the server's clock, read again once the limits lock is held (a claim that
    waited for it must not start its jobs at a time before the finish that freed their slot).

    Run in autocommit (:func:`.plan.run_alone`). The first statement (:func:`_first_sql`)
    reads the clock, promotes due scheduled jobs and, when no limited job of the queues is
    queued and no scheduled job was due, claims: one round trip, no BEGIN and COMMIT (the
    usual claim of a busy queue). Otherwise it claimed nothing, and the claim goes on as
    before: the one-statement claim of unlimited jobs, which now sees the jobs just promoted,
    or the claim of limited jobs, in a transaction it opens and commits itself.

    Durable, all of it, unlike the outcomes: a claim lost in a server crash would hand its
    fencing token out again, to a second worker, while the first still runs the job."""
    patience = 0.0 if idle else lease_seconds
    params: dict[str, Any] = {
        "worker": worker_id,
        "now": fixed_now,
        "lease": lease_seconds,
        "queues": list(room),
        "rooms": [min(n, limit) for n in room.values()],
        "limit": limit,
        "patience": patience,
    }
    rows = yield Query(_first_sql(names, fixed_now is not None), params, generic=True)
    now, limited, due = float(rows[0][0]), bool(rows[0][1]), bool(rows[0][2])
    if limited:
        yield Query("BEGIN")
        jobs = yield from _limited_claim(
            names, fixed_now, worker_id, room, limit, lease_seconds, idle
        )
        yield Query("COMMIT")
        return jobs
    if due:  # promoted now (or held by another claim's promotion): claim with them in sight
        params["now"] = now
        params["patient"] = now - patience
        rows = yield Query(_fast_sql(names), params)
        return sorted((schema.row_to_job(r) for r in rows), key=_job_order)
    return sorted((schema.row_to_job(r[3:]) for r in rows if r[3] is not None), key=_job_order)


def _first_sql(names: Names, fixed: bool) -> str:
    """Clock, promotion, probes and (when neither probe says no) the claim, in one statement.

    ``g.limited``: a limited job of the queues is queued (or was promoted now); ``g.due``: a
    scheduled job was due, promoted by this statement or not (its snapshot still shows it
    scheduled, so the claim could not see it). Either one keeps the claim from taking
    anything. The result: one row per job claimed, or one row of NULL job columns."""
    s = names.s
    clock = (
        "%(now)s::double precision"
        if fixed
        else "extract(epoch FROM clock_timestamp())::double precision"
    )
    now = "(SELECT t FROM clk)"
    promote = (
        f"clk AS MATERIALIZED (SELECT {clock} AS t), "
        f"moved AS (UPDATE {s}.jobs SET status = 'queued', updated_at = {now} "
        f"WHERE id IN (SELECT id FROM {s}.jobs WHERE status = 'scheduled' AND run_at <= {now} "
        "ORDER BY run_at LIMIT 1000 FOR UPDATE SKIP LOCKED) "
        "RETURNING id, attempts, token, worker_id, queue, limited), "
        f"promoted AS (INSERT INTO {s}.history ({schema.HISTORY_COLUMNS}) SELECT id, {now}, "
        "'scheduled', 'queued', 'promoted', attempts, token, worker_id, NULL FROM moved), "
        f"g AS MATERIALIZED (SELECT {now} AS now, EXISTS (SELECT 1 FROM {s}.jobs "
        "WHERE status = 'queued' AND limited AND queue = ANY(%(queues)s)) "
        "OR EXISTS (SELECT 1 FROM moved WHERE limited AND queue = ANY(%(queues)s)) AS limited, "
        f"EXISTS (SELECT 1 FROM {s}.jobs WHERE status = 'scheduled' AND run_at <= {now}) AS due)"
    )
    go = "NOT (SELECT limited OR due FROM g)"
    take = _fast_sql(names, go).replace("%(now)s", "(SELECT now FROM g)")
    take = take.replace("%(patient)s", "((SELECT now FROM g) - %(patience)s)")
    body, _, _ = take.removeprefix("WITH ").rpartition(" SELECT ")
    return (
        f"WITH {promote}, {body} SELECT g.now, g.limited, g.due, claimed.* FROM g "
        "LEFT JOIN claimed ON true"
    )


def _limited_claim(
    names: Names,
    fixed_now: float | None,
    worker_id: str,
    room: dict[str, int],
    limit: int,
    lease_seconds: float,
    idle: bool,
) -> Plan[list[JobRecord]]:
    """The claim with the limits lock held, inside the caller's transaction."""
    yield Query(f"SELECT id FROM {names.s}.limits_lock FOR UPDATE")
    now, chosen = yield from _limited_choice(names, fixed_now, room, limit, lease_seconds, idle)
    if not chosen:
        return []
    rows = yield Query(
        _take_sql(names, "SELECT unnest(%(ids)s::text[])"),
        {"worker": worker_id, "now": now, "lease": lease_seconds, "ids": chosen},
    )
    position = {job_id: i for i, job_id in enumerate(chosen)}
    return sorted((schema.row_to_job(r) for r in rows), key=lambda j: position[j.id])


def _take_sql(names: Names, ids: str) -> str:
    """Move the jobs ``ids`` selects to running under new leases, with their history.

    A claim is dated no earlier than the job's last change: the claim's clock is read at its
    first statement, and a job committed (submitted, retried) after that read can still be
    taken by this statement (READ COMMITTED: a new snapshot per statement)."""
    s = names.s
    at = "greatest(%(now)s, updated_at)"  # in SET: the row's old updated_at
    return (
        f"WITH claimed AS (UPDATE {s}.jobs SET status = 'running', attempts = attempts + 1, "
        f"token = token + 1, worker_id = %(worker)s, lease_until = {at} + %(lease)s, "
        f"started_at = {at}, updated_at = {at}, progress = NULL, progress_message = NULL, "
        f"reserved = false WHERE id IN ({ids}) AND status = 'queued' "
        f"RETURNING {schema.JOB_COLUMNS}), "
        f"logged AS (INSERT INTO {s}.history ({schema.HISTORY_COLUMNS}) SELECT id, updated_at, "
        "'queued', 'running', 'claimed', attempts, token, worker_id, NULL FROM claimed) "
        f"SELECT {schema.JOB_COLUMNS} FROM claimed"
    )


def _fast_sql(names: Names, go: str = "true") -> str:
    """The one-statement claim of unlimited jobs: per queue its first ready jobs and its first
    patient suspect, locked with SKIP LOCKED; a suspect first in line is taken alone. ``go``:
    a condition without which it reads and takes nothing."""
    s = names.s
    per_queue = (
        "SELECT c.* FROM unnest(%(queues)s::text[], %(rooms)s::int[]) AS q(name, room) "
        "CROSS JOIN LATERAL (SELECT id, priority, run_at, losses FROM {s}.jobs "
        "WHERE status = 'queued' AND queue = q.name AND NOT limited AND {cond} "
        f"ORDER BY {ORDER} LIMIT {{n}} FOR UPDATE SKIP LOCKED) c"
    )
    ready = per_queue.format(s=s, cond=f"losses = 0 AND {go}", n="q.room")
    suspects = per_queue.format(s=s, cond=f"losses > 0 AND run_at <= %(patient)s AND {go}", n="1")
    pick = (
        f"WITH cand AS MATERIALIZED ({ready} UNION ALL {suspects}), "
        f"head AS (SELECT id, losses FROM cand ORDER BY {ORDER} LIMIT 1) "
        "SELECT cand.id FROM cand, head WHERE (head.losses = 0 AND cand.losses = 0) "
        "OR cand.id = head.id "
        "ORDER BY cand.priority DESC, cand.run_at, cand.id LIMIT %(limit)s"
    )
    return _take_sql(names, pick)


def _limited_choice(
    names: Names,
    fixed_now: float | None,
    room: dict[str, int],
    limit: int,
    lease_seconds: float,
    idle: bool,
) -> Plan[tuple[float, list[str]]]:
    """The claim's clock and which jobs to start, with the limits lock held (the SQLite
    backend's algorithm).

    The clock is read after the running jobs are counted: a finish that committed between the
    two reads would otherwise be counted as ended while its history (dated before its commit)
    says it ended after this claim began, and the recorded runs of a capped slot would
    overlap."""
    s = names.s
    pick = f"SELECT {PICK} FROM {s}.jobs WHERE status = 'queued' AND queue = %s AND {{}} "
    pick += f"ORDER BY {ORDER}"
    running = yield from _running_counts(names)
    buckets = yield from _buckets(names)
    now = yield from clock_plan(fixed_now)
    patient = now if idle else now - lease_seconds
    gate = Gate(now, lambda slot: running.get(slot.name, 0), buckets.get)
    candidates: Rows = []
    suspects: Rows = []
    for queue, cap in room.items():
        wanted = min(cap, limit)
        candidates += yield Query(
            pick.format("losses = 0 AND NOT capped") + " LIMIT %s FOR UPDATE SKIP LOCKED",
            (queue, wanted),
        )
        candidates += yield from _capped_candidates(names, pick, gate, queue, wanted + CAPPED_SCAN)
        suspects += yield Query(
            pick.format("losses > 0 AND run_at <= %s") + " LIMIT 1 FOR UPDATE SKIP LOCKED",
            (queue, patient),
        )
    candidates.sort(key=_row_order)
    suspects.sort(key=_row_order)
    chosen: list[str] = []
    deferred: list[tuple[float, str]] = []
    if suspects and (not candidates or _row_order(suspects[0]) < _row_order(candidates[0])):
        _gate(gate, suspects[0], chosen, deferred)  # a suspect first in line runs alone
    if not chosen:
        taken = dict.fromkeys(room, 0)
        for row in candidates:
            if len(chosen) >= limit:
                break
            if taken[row[4]] < room[row[4]] and _gate(gate, row, chosen, deferred):
                taken[row[4]] += 1
    if gate.buckets:
        yield Query(
            f"INSERT INTO {s}.buckets VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET next_start = excluded.next_start",
            [(name.encode("utf-8", "surrogatepass"), at) for name, at in gate.buckets.items()],
            many=True,
        )
    yield from _defer(names, now, deferred)
    return now, chosen


def _capped_candidates(names: Names, pick: str, gate: Gate, queue: str, wanted: int) -> Plan[Rows]:
    """Capped jobs of ``queue`` in claim order whose slots are free: page through them, since
    any number may wait behind a full slot without hiding the rest."""
    found: Rows = []
    offset = 0
    while len(found) < wanted:
        page = yield Query(
            pick.format(f"losses = 0 AND capped AND {_has_room(names)}") + " LIMIT %s OFFSET %s",
            (queue, CAPPED_PAGE, offset),
        )
        found += [r for r in page if not _full(gate, r)][: wanted - len(found)]
        if len(page) < CAPPED_PAGE:
            break
        offset += CAPPED_PAGE
    return found


def _has_room(names: Names) -> str:
    """A capped job none of whose slots is full before this claim (counted on the running
    capped jobs only: the jobs_slots index), so jobs behind a full slot are never read."""
    count = f"(SELECT count(*) FROM {names.s}.jobs r WHERE r.status = 'running' AND r.capped "
    return (
        f"(key_cap IS NULL OR concurrency_key IS NULL OR key_cap > {count}"
        "AND r.task = jobs.task AND r.concurrency_key = jobs.concurrency_key "
        f"AND r.key_cap IS NOT NULL)) AND (cap IS NULL OR cap > {count}"
        "AND r.task = jobs.task AND r.cap IS NOT NULL))"
    )


def capped_ready_sql(names: Names) -> str:
    """Whether a queued capped job of the queues ``%(q)s`` has a free slot (a job still waiting
    is woken by the finish that frees its slot)."""
    return (
        f"SELECT 1 FROM {names.s}.jobs WHERE status = 'queued' AND queue = ANY(%(q)s) "
        f"AND losses = 0 AND capped AND {_has_room(names)} LIMIT 1"
    )


def _running_counts(names: Names) -> Plan[dict[str, int]]:
    """Running capped jobs per slot (task, and task + key), read once per claim."""
    rows = yield Query(
        f"SELECT task, concurrency_key, count(*) FILTER (WHERE cap IS NOT NULL), "
        f"count(*) FILTER (WHERE key_cap IS NOT NULL) FROM {names.s}.jobs "
        "WHERE status = 'running' AND capped GROUP BY task, concurrency_key"
    )
    counts: dict[str, int] = {}
    for task, raw_key, by_task, by_key in rows:  # the slot names of offload.backends._gate
        counts[f"t\0{task}"] = counts.get(f"t\0{task}", 0) + by_task
        if raw_key is not None:
            counts[f"k\0{task}\0{bytes(raw_key).decode('utf-8', 'surrogatepass')}"] = by_key
    return counts


def _buckets(names: Names) -> Plan[dict[str, float]]:
    rows = yield Query(f"SELECT name, next_start FROM {names.s}.buckets")
    return {bytes(name).decode("utf-8", "surrogatepass"): at for name, at in rows}


def _full(gate: Gate, row: tuple[Any, ...]) -> bool:
    return gate.full(row[5], _key(row), Limits(row[7], row[8], row[9], row[10]))


def _key(row: tuple[Any, ...]) -> str | None:
    return None if row[6] is None else bytes(row[6]).decode("utf-8", "surrogatepass")


def _gate(
    gate: Gate, row: tuple[Any, ...], chosen: list[str], deferred: list[tuple[float, str]]
) -> bool:
    """Put a candidate row where its limits send it; True when it starts now."""
    if row[7] is None and row[8] is None and row[9] is None and row[10] is None:
        chosen.append(row[0])
        return True
    verdict = gate.decide(row[5], _key(row), Limits(row[7], row[8], row[9], row[10]), row[11])
    if verdict is True:
        chosen.append(row[0])
        return True
    if verdict is not False:
        deferred.append((float(verdict), row[0]))
    return False


def _defer(names: Names, now: float, deferred: list[tuple[float, str]]) -> Plan[None]:
    """queued -> scheduled at the reserved start of each rate-limited job."""
    for start, job_id in deferred:
        check_transition(job_id, State.QUEUED, State.SCHEDULED)
        yield Query(
            f"WITH moved AS (UPDATE {names.s}.jobs SET status = 'scheduled', run_at = %(at)s, "
            "reserved = true, updated_at = %(now)s WHERE id = %(id)s "
            "RETURNING id, attempts, token, worker_id) "
            f"INSERT INTO {names.s}.history ({schema.HISTORY_COLUMNS}) SELECT id, %(now)s, "
            f"'queued', 'scheduled', '{Reason.RATE_LIMITED.value}', attempts, token, worker_id, "
            "NULL FROM moved",
            {"at": start, "now": now, "id": job_id},
        )


def _row_order(row: tuple[Any, ...]) -> tuple[int, float, str]:
    return (-row[1], row[2], row[0])


def _job_order(job: JobRecord) -> tuple[int, float, str]:
    return (-job.priority, job.run_at, job.id)
