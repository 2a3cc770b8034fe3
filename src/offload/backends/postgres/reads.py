"""Reads for the dashboard, the CLI and the HTTP API: listing, history, counts.

The listing walks the ``(created_at, id)`` indexes newest first with a keyset cursor, so a page
costs the same at the millionth job as at the first.
"""

from __future__ import annotations

from typing import Any

from offload.backends._common import decode_cursor, encode_cursor
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


def stats(names: Names) -> Plan[list[QueueStats]]:
    rows = yield Query(
        f"SELECT queue, status, count(*) FROM {names.s}.jobs GROUP BY queue, status ORDER BY queue"
    )
    counts: dict[str, dict[State, int]] = {}
    for queue, status, n in rows:
        counts.setdefault(queue, {})[State(status)] = n
    return [QueueStats(q, c) for q, c in counts.items()]
