"""Moves to a final state in one round trip: the worker's outcomes while it drains a queue.

A job's move to a final state (alone, or a group of them, see :mod:`.group`) is one statement
already (:func:`.tx.finish_sql`, :func:`.tx.finish_many_sql`). Run in a transaction of its own
it took four round trips: ``BEGIN``, the clock read (which also relaxes the commit, see
:func:`.plan.clock_plan`), the statement and ``COMMIT``. Here the clock read and the relaxed
commit move into the statement itself (a materialized CTE, as :mod:`.single` does for a
submit), and the statement runs in autocommit (:func:`.plan.run_alone`): one round trip, one
transaction, the same rows and the same conditions on each lease.

A group that names one job twice still takes :func:`.tx.finish_many` (one statement per round,
in one transaction): rounds in separate transactions could commit the first and fail the
second, and the group's fallback would then retry moves already made.
"""

from __future__ import annotations

from functools import lru_cache

from offload.backends._common import check_transition
from offload.backends.postgres import schema
from offload.backends.postgres.plan import Plan, Query, clock_plan
from offload.backends.postgres.submit import Names
from offload.backends.postgres.tx import (
    FINISH,
    Finish,
    finish_many,
    finish_many_sql,
    finish_params,
    finish_sql,
)
from offload.core.states import State
from offload.errors import LeaseLost

#: The statement's clock (the backend's fixed test clock, else the server's), read once, and
#: its commit relaxed: an outcome is the worker's own bookkeeping (see .plan.clock_plan).
NOW = (
    "n AS MATERIALIZED (SELECT coalesce(%(now)s::double precision, "
    "extract(epoch FROM clock_timestamp())::double precision) AS now, "
    "set_config('synchronous_commit', 'off', true) AS relaxed)"
)


def many(
    names: Names, fixed_now: float | None, items: list[Finish]
) -> Plan[list[LeaseLost | None]]:
    """Several jobs' moves: :func:`group` when no job is named twice, else
    :func:`.tx.finish_many` in a transaction this plan opens and commits (run it in
    autocommit, see :func:`.plan.run_alone`)."""
    if len({item.lease.job_id for item in items}) == len(items):
        return (yield from group(names, fixed_now, items))
    yield Query("BEGIN")
    now = yield from clock_plan(fixed_now, relaxed=True)
    lost = yield from finish_many(names, now, items)
    yield Query("COMMIT")
    return lost


def one(names: Names, fixed_now: float | None, item: Finish) -> Plan[None]:
    """One job's move to a final state in one statement; :class:`LeaseLost` if its lease is."""
    _check(item)
    rows = yield Query(
        _alone(finish_sql(names, FINISH)),
        {
            "now": fixed_now,
            "id": item.lease.job_id,
            "token": item.lease.token,
            "target": item.target.value,
            "reason": item.reason.value,
            "result": item.result,
            "error": item.error,
            "detail": schema.clean_text(item.detail),
            "channel": names.channel,
        },
        generic=True,
    )
    if not rows:
        raise LeaseLost(item.lease.job_id, item.lease.token)


def group(
    names: Names, fixed_now: float | None, items: list[Finish]
) -> Plan[list[LeaseLost | None]]:
    """Several jobs' moves (no job named twice) in one statement, each conditional on its own
    lease: a lost lease fails only its own item."""
    for item in items:
        _check(item)
    params = finish_params(names, 0.0, items)
    params["now"] = fixed_now
    rows = yield Query(_alone(finish_many_sql(names)), params, generic=True)
    done = {row[0] for row in rows}
    return [
        None if item.lease.job_id in done else LeaseLost(item.lease.job_id, item.lease.token)
        for item in items
    ]


def _check(item: Finish) -> None:
    check_transition(item.lease.job_id, State.RUNNING, item.target)


@lru_cache(maxsize=64)
def _alone(sql: str) -> str:
    """``sql`` (``WITH ...``) with its clock read inside it: every ``%(now)s`` becomes the
    one value of :data:`NOW`."""
    if not sql.startswith("WITH "):
        raise ValueError("a finish statement starts with WITH")
    body = sql.removeprefix("WITH ").replace("%(now)s", "(SELECT now FROM n)")
    return f"WITH {NOW}, {body}"
