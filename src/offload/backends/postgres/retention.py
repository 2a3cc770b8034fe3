"""Retention on PostgreSQL: delete ended jobs past their age by outcome, then the oldest beyond
the cap per queue, as SQLite does (``backends/sqlite/retention.py``). Both read partial indexes
of ended jobs (``jobs_outcome`` and ``jobs_finished``, migration 2), so a prune costs what it
deletes, not what is stored; rows another prune holds are skipped (``SKIP LOCKED``)."""

from __future__ import annotations

from typing import Any

from offload.backends.postgres.plan import Plan, Query
from offload.core.retention import OUTCOMES, RetentionPolicy
from offload.core.states import State

#: The terms of the partial indexes' WHERE, repeated verbatim so the planner uses them.
ENDED = "status IN ('succeeded', 'failed', 'cancelled')"

#: Migration 2: the indexes retention reads.
INDEXES = f"""
CREATE INDEX jobs_outcome ON {{s}}.jobs (status, finished_at)
    WHERE {ENDED} AND expires_at IS NULL;
CREATE INDEX jobs_finished ON {{s}}.jobs (queue, finished_at) WHERE {ENDED};
"""


def delete(s: str, ids: list[str]) -> Plan[None]:
    """Delete these jobs and their history."""
    if ids:
        yield Query(f"DELETE FROM {s}.history WHERE job_id = ANY(%s)", (ids,))
        yield Query(f"DELETE FROM {s}.jobs WHERE id = ANY(%s)", (ids,))


def prune(s: str, now: float, limit: int, policy: RetentionPolicy) -> Plan[int]:
    """Delete up to ``limit`` jobs the policy makes due; return how many."""
    ids: list[str] = []
    for outcome in OUTCOMES:
        for task, age in _ages(policy, outcome):
            if len(ids) < limit:
                ids += yield from _aged(s, now - age, outcome, task, policy, limit - len(ids))
    yield from delete(s, ids)
    if policy.max_finished is not None and len(ids) < limit:
        over = yield from _over_cap(s, policy.max_finished, limit - len(ids))
        yield from delete(s, over)
        ids += over
    return len(ids)


def _ages(policy: RetentionPolicy, outcome: State) -> list[tuple[str | None, float]]:
    """(task, age) to apply: None for every task without its own retention, then each such
    task; tasks (or the default) without an age for the outcome are left out."""
    pairs: list[tuple[str | None, float | None]] = [(None, policy.default.age(outcome))]
    pairs += [(name, r.age(outcome)) for name, r in policy.tasks.items()]
    return [(task, age) for task, age in pairs if age is not None]


def _aged(
    s: str, cutoff: float, outcome: State, task: str | None, policy: RetentionPolicy, limit: int
) -> Plan[list[str]]:
    which, param = (
        ("task = %s", task) if task is not None else ("NOT (task = ANY(%s))", [*policy.tasks])
    )
    args: list[Any] = [outcome.value, cutoff, param, limit]
    rows = yield Query(
        f"SELECT id FROM {s}.jobs WHERE {ENDED} AND expires_at IS NULL AND status = %s "
        f"AND finished_at <= %s AND {which} ORDER BY finished_at LIMIT %s FOR UPDATE SKIP LOCKED",
        args,
    )
    return [row[0] for row in rows]


def _over_cap(s: str, cap: int, limit: int) -> Plan[list[str]]:
    """The oldest ended jobs of each queue beyond ``cap``, ``limit`` at most."""
    counts = yield Query(f"SELECT queue, count(*) FROM {s}.jobs WHERE {ENDED} GROUP BY queue")
    ids: list[str] = []
    for queue, count in counts:
        if count > cap and len(ids) < limit:
            rows = yield Query(
                f"SELECT id FROM {s}.jobs WHERE {ENDED} AND queue = %s ORDER BY finished_at "
                "LIMIT %s FOR UPDATE SKIP LOCKED",
                (queue, min(count - cap, limit - len(ids))),
            )
            ids += [row[0] for row in rows]
    return ids
