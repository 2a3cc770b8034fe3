"""One job, one statement: the usual submit on PostgreSQL, from the backend's pool or inside
a caller's transaction (see :func:`.submit.submit_plan`, which takes this path for a single job
without an idempotency key).

The statement reads the server's clock (or the backend's fixed test clock), decides the job's
due time and so its status from it as :func:`.submit.insert_jobs` does, inserts the job and its
history row, and, when asked, calls ``pg_notify``: one round trip where a clock read and an
insert took two.
"""

from __future__ import annotations

from functools import lru_cache

import orjson

from offload.backends._common import check_new_job, check_transition, submitted_record
from offload.backends.postgres import schema
from offload.backends.postgres.plan import Plan, Query
from offload.core.job import JobRecord, NewJob
from offload.core.limits import Limits
from offload.core.states import Reason, State

NO_LIMITS = Limits()


def one_statement(jobs: list[NewJob]) -> bool:
    """Whether :func:`.submit.submit_plan` stores ``jobs`` in one statement (one job without an
    idempotency key): such a submit can run in autocommit, as a transaction of its own."""
    return len(jobs) == 1 and jobs[0].idempotency_key is None


def submit_one(
    schema_name: str, channel: str | None, fixed_now: float | None, new: NewJob, *, wake: bool
) -> Plan[list[JobRecord]]:
    """Store ``new`` in ``schema_name`` in one statement (one round trip); with ``wake``, that
    statement also sends on ``channel`` the ``NOTIFY`` that PostgreSQL delivers at commit (none
    in poll-only mode: no channel).

    The server's clock (or ``fixed_now``) is read in the statement, which also decides, as
    :func:`.submit.insert_jobs` does, the job's due time and so its status; the same checks run
    before it."""
    check_new_job(new)
    delay = max(0.0, new.delay)
    may_wait = new.run_at is not None or delay > 0
    for status in (State.QUEUED, State.SCHEDULED) if may_wait else (State.QUEUED,):
        check_transition(new.id, None, status)
    lim = new.limits or NO_LIMITS
    params = {
        "now": fixed_now,
        "channel": channel,
        "run_at": new.run_at,
        "delay": delay,
        "id": new.id,
        "task": new.task,
        "queue": new.queue,
        "args": orjson.dumps(new.args),
        "kwargs": orjson.dumps(new.kwargs),
        "priority": new.priority,
        "ckey": schema.encode_key(new.concurrency_key),
        "tenant": new.tenant,
        "meta": orjson.dumps(new.meta),
        "ttl": new.result_ttl,
        "limited": lim.any,
        "capped": lim.capped,
        "cap": lim.concurrency,
        "key_cap": lim.key_concurrency,
        "rate": lim.rate,
        "key_rate": lim.key_rate,
    }
    rows = yield Query(_sql(schema_name, wake and channel is not None), params)
    status, run_at, now = rows[0]
    return [submitted_record(new, State(status), float(run_at), float(now))]


@lru_cache(maxsize=32)
def _sql(schema_name: str, wake: bool) -> str:
    """The statement of :func:`submit_one`: ``n``, the clock read once with the NOTIFY sent
    once (a materialized CTE computes every column it lists, used or not), then the job, then
    its history row from the job as inserted."""
    s = schema.quoted(schema_name)
    notify = ", pg_notify(%(channel)s, '')" if wake else ""
    return (
        "WITH n AS MATERIALIZED (SELECT coalesce(%(now)s::double precision, "
        f"extract(epoch FROM clock_timestamp())::double precision) AS now{notify}), "
        "clock AS (SELECT now, coalesce(%(run_at)s::double precision, "
        "now + %(delay)s::double precision) AS run_at FROM n), "
        f"job AS (INSERT INTO {s}.jobs (id, task, queue, status, args, kwargs, priority, run_at, "
        "created_at, updated_at, concurrency_key, tenant, meta, result_ttl, limited, capped, "
        "cap, key_cap, rate, key_rate) SELECT %(id)s::text, %(task)s::text, %(queue)s::text, "
        f"CASE WHEN run_at > now THEN '{State.SCHEDULED.value}' ELSE '{State.QUEUED.value}' END, "
        "%(args)s::bytea, %(kwargs)s::bytea, %(priority)s::integer, run_at, now, now, "
        "%(ckey)s::bytea, %(tenant)s::text, %(meta)s::bytea, %(ttl)s::double precision, "
        "%(limited)s::boolean, %(capped)s::boolean, %(cap)s::integer, %(key_cap)s::integer, "
        "%(rate)s::double precision, %(key_rate)s::double precision FROM clock "
        "RETURNING id, status, run_at, created_at), "
        f"history AS (INSERT INTO {s}.history ({schema.HISTORY_COLUMNS}) SELECT id, created_at, "
        f"NULL, status, '{Reason.SUBMITTED.value}', 0, 0, NULL, NULL FROM job) "
        "SELECT status, run_at, created_at FROM job"
    )
