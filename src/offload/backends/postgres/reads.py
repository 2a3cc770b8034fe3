"""Reads for the dashboard, the CLI and the HTTP API: listing, history, counts.

The listing walks the ``(created_at, id)`` indexes newest first with a keyset cursor, so a page
costs the same at the millionth job as at the first.
"""

from __future__ import annotations

from typing import Any

from offload.backends._common import decode_cursor, encode_cursor, ready_age
from offload.backends.postgres import schema
from offload.backends.postgres.plan import Plan, Query
from offload.backends.postgres.submit import Names
from offload.core.job import JobFilter, Page, QueueStats, Transition
from offload.core.states import State


def list_jobs(names: Names, flt: JobFilter) -> Plan[Page]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("status", flt.status.value if flt.status else None),
        ("task", flt.task),
        ("queue", flt.queue),
        ("tenant", flt.tenant),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if flt.cursor is not None:
        where.append("(created_at, id) < (%s, %s)")
        params += decode_cursor(flt.cursor)
    sql = names.select_job + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY created_at DESC, id DESC LIMIT %s"
    params.append(flt.limit + 1)
    rows = yield Query(sql, params)
    jobs = [schema.row_to_job(r) for r in rows[: flt.limit]]
    more = len(rows) > flt.limit
    cursor = encode_cursor(jobs[-1].created_at, jobs[-1].id) if more and jobs else None
    return Page(jobs, cursor)


def history(names: Names, job_id: str) -> Plan[list[Transition]]:
    rows = yield Query(
        f"SELECT {schema.HISTORY_COLUMNS} FROM {names.s}.history WHERE job_id = %s ORDER BY seq",
        (job_id,),
    )
    return [schema.row_to_transition(r) for r in rows]


#: The conditions of the partial indexes that hold the queued jobs (see schema.DDL).
QUEUED_INDEXES = (
    "status = 'queued' AND losses = 0 AND NOT limited",
    "status = 'queued' AND limited",
    "status = 'queued' AND losses > 0",
)
_HEAD = (
    "SELECT queue, priority, run_at FROM {s}.jobs WHERE {cond} {more} "
    "ORDER BY queue, priority DESC, run_at, id LIMIT 1"
)


def _skip_scan(names: Names, n: int, cond: str) -> str:
    """A recursive CTE ``h{n}``: the first job of every (queue, priority) run of one partial
    index, two index seeks per run whatever the number of jobs."""
    head = _HEAD.format(s=names.s, cond=cond, more="{}")
    return (
        f"h{n} AS (({head.format('')}) UNION ALL SELECT x.* FROM h{n}, LATERAL "
        f"(({head.format(f'AND queue = h{n}.queue AND priority < h{n}.priority')}) UNION ALL "
        f"({head.format(f'AND queue > h{n}.queue')}) LIMIT 1) x)"
    )


def oldest_ready_sql(names: Names) -> str:
    """Per queue with a ready job, the earliest due time of its ready jobs: the heads of the
    queued jobs' indexes, and the scheduled jobs due by ``%s`` (not promoted yet)."""
    ctes = ", ".join(_skip_scan(names, n, cond) for n, cond in enumerate(QUEUED_INDEXES))
    heads = " UNION ALL ".join(f"SELECT queue, run_at FROM h{n}" for n in range(3))
    due = f"SELECT queue, run_at FROM {names.s}.jobs WHERE status = 'scheduled' AND run_at <= %s"
    return (
        f"WITH RECURSIVE {ctes} SELECT queue, min(run_at) FROM ({heads} UNION ALL {due}) r "
        "GROUP BY queue"
    )


def stats(names: Names, now: float) -> Plan[list[QueueStats]]:
    rows = yield Query(
        f"SELECT queue, status, count(*) FROM {names.s}.jobs GROUP BY queue, status ORDER BY queue"
    )
    counts: dict[str, dict[State, int]] = {}
    for queue, status, n in rows:
        counts.setdefault(queue, {})[State(status)] = n
    heads = yield Query(oldest_ready_sql(names), (now,))
    oldest = {queue: float(due) for queue, due in heads}
    return [QueueStats(q, c, ready_age(now, oldest.get(q))) for q, c in counts.items()]
