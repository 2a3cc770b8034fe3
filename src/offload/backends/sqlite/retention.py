"""Retention in SQLite: delete ended jobs past their age by outcome, then the oldest beyond
the cap per queue. Both read partial indexes of ended jobs (``jobs_outcome``,
``jobs_finished`` in schema.py), so a prune costs what it deletes, not what is stored."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from offload.core.retention import OUTCOMES, RetentionPolicy
from offload.core.states import State

#: The terms of the partial indexes' WHERE, repeated verbatim so the planner uses them.
ENDED = "status IN ('succeeded', 'failed', 'cancelled')"
#: The ids of a batch, from one JSON array parameter (the lookups still use the indexes).
DOOMED = "SELECT value FROM json_each(?)"


def delete(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    """Delete these jobs and their history. The ids go in as one JSON array, so that the two
    statements read the same whatever the batch's size: with one ``IN (?, ?, ...)`` per size,
    each size was a statement of its own in sqlite3's cache (128 per connection), about 130 KB
    each for a batch of 400-500, which grew the worker's RSS sweep after sweep."""
    if ids:
        doomed = orjson.dumps(list(ids)).decode()
        conn.execute(f"DELETE FROM history WHERE job_id IN ({DOOMED})", (doomed,))
        conn.execute(f"DELETE FROM jobs WHERE id IN ({DOOMED})", (doomed,))


def prune(conn: sqlite3.Connection, now: float, limit: int, policy: RetentionPolicy) -> int:
    """Delete up to ``limit`` jobs the policy makes due; return how many."""
    ids: list[str] = []
    for outcome in OUTCOMES:
        for task, age in _ages(policy, outcome):
            if len(ids) < limit:
                ids += _aged(conn, now - age, outcome.value, task, policy, limit - len(ids))
    delete(conn, ids)
    if policy.max_finished is not None and len(ids) < limit:
        over = _over_cap(conn, policy.max_finished, limit - len(ids))
        delete(conn, over)
        ids += over
    return len(ids)


def _ages(policy: RetentionPolicy, outcome: State) -> list[tuple[str | None, float]]:
    """(task, age) to apply: None for every task without its own retention, then each such
    task; tasks (or the default) without an age for the outcome are left out."""
    pairs: list[tuple[str | None, float | None]] = [(None, policy.default.age(outcome))]
    pairs += [(name, r.age(outcome)) for name, r in policy.tasks.items()]
    return [(task, age) for task, age in pairs if age is not None]


def _aged(
    conn: sqlite3.Connection,
    cutoff: float,
    status: str,
    task: str | None,
    policy: RetentionPolicy,
    limit: int,
) -> list[str]:
    if task is None:
        own = list(policy.tasks)
        which = f"task NOT IN ({','.join('?' * len(own))})" if own else "1"
    else:
        own, which = [task], "task = ?"
    rows = conn.execute(
        f"SELECT id FROM jobs WHERE {ENDED} AND expires_at IS NULL AND status = ? "
        f"AND finished_at <= ? AND {which} ORDER BY finished_at LIMIT ?",
        (status, cutoff, *own, limit),
    )
    return [r[0] for r in rows]


def _over_cap(conn: sqlite3.Connection, cap: int, limit: int) -> list[str]:
    """The oldest ended jobs of each queue beyond ``cap``, ``limit`` at most."""
    counts = conn.execute(f"SELECT queue, COUNT(*) FROM jobs WHERE {ENDED} GROUP BY queue")
    ids: list[str] = []
    for queue, count in counts.fetchall():
        if count > cap and len(ids) < limit:
            rows = conn.execute(
                f"SELECT id FROM jobs WHERE {ENDED} AND queue = ? ORDER BY finished_at LIMIT ?",
                (queue, min(count - cap, limit - len(ids))),
            )
            ids += [r[0] for r in rows]
    return ids
