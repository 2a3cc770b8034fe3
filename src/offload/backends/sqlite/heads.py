"""The SQLite backend's oldest ready job per queue, read as index seeks (for ``stats()``).

The queued jobs sit in three partial indexes on ``(queue, priority DESC, run_at, id)``; the
earliest due time of a queue is the least of the heads of its (queue, priority) runs, which a
skip scan reaches in two seeks per run whatever the number of jobs. Due scheduled jobs (not
promoted yet: no claim ran since they came due) come from the ``jobs_due`` index.
"""

from __future__ import annotations

import sqlite3

#: The conditions of the partial indexes that hold the queued jobs (see schema.DDL).
QUEUED_INDEXES = (
    "status = 'queued' AND losses = 0 AND capped = 0",
    "status = 'queued' AND losses = 0 AND capped = 1",
    "status = 'queued' AND losses > 0",
)
_ORDER = "ORDER BY queue, priority DESC, run_at, id LIMIT 1"
DUE = (
    "SELECT queue, MIN(run_at) FROM jobs WHERE status = 'scheduled' AND run_at <= ? GROUP BY queue"
)


def oldest_ready(conn: sqlite3.Connection, now: float) -> dict[str, float]:
    """Per queue with a ready job, the earliest due time of its ready jobs."""
    oldest: dict[str, float] = {}

    def seen(queue: str, due: float) -> None:
        oldest[queue] = min(due, oldest.get(queue, due))

    for cond in QUEUED_INDEXES:
        for queue, due in _run_heads(conn, cond):
            seen(queue, due)
    for queue, due in conn.execute(DUE, (now,)):
        seen(queue, due)
    return oldest


def _run_heads(conn: sqlite3.Connection, cond: str) -> list[tuple[str, float]]:
    """The first job of every (queue, priority) run of one index: its queue and due time."""
    base = f"SELECT queue, priority, run_at FROM jobs WHERE {cond}"
    heads: list[tuple[str, float]] = []
    row = conn.execute(f"{base} {_ORDER}").fetchone()
    while row is not None:
        queue, priority, due = row
        heads.append((queue, due))
        row = conn.execute(f"{base} AND queue = ? AND priority < ? {_ORDER}", (queue, priority))
        row = row.fetchone() or conn.execute(f"{base} AND queue > ? {_ORDER}", (queue,)).fetchone()
    return heads
