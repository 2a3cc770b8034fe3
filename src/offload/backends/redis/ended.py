"""Ended Redis jobs: read from the bucket of their creation time (see retire() in prelude.lua).

A job that ended has no key of its own: its compact record is a field of ``f:<B>``, B its
creation time over BUCKET_SECONDS; ``get`` finds B from the id's time (its first 12 hex
digits, ms) or, for the few jobs whose id's time is in another bucket, the pointer hash
``fp``. Listing (the script LIST) walks the buckets of ``fb`` newest first, each filtered
whole in Redis.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from string import hexdigits
from typing import Any

import redis.asyncio as aioredis

from offload.backends.redis.records import ended_hash, job_from_hash, opt
from offload.backends.redis.scripts import BUCKET_SECONDS
from offload.core.job import JobFilter, JobRecord
from offload.core.states import State

#: A key of the listing order: (created_at, id), newest first.
Key = tuple[float, str]
#: The statuses of ended jobs (only in buckets); the others are only in the live indexes.
ENDED = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})


def id_bucket(job_id: str) -> str | None:
    """The bucket of a job whose id's time is its creation time (None: not a time id)."""
    head = job_id[:12]
    if len(head) < 12 or any(c not in hexdigits for c in head):
        return None
    return str(math.floor(int(head, 16) / 1000 / BUCKET_SECONDS))


async def lookup(c: aioredis.Redis, root: str, job_id: str) -> tuple[dict[str, str], Any]:
    """The job's live hash and history list, or ({}, its ended record or None); one
    MULTI for the three places a job can be, a second read through a pointer."""
    guess = id_bucket(job_id)
    async with c.pipeline(transaction=True) as pipe:
        pipe.hgetall(f"{root}j:{job_id}")
        pipe.lrange(f"{root}h:{job_id}", 0, -1)
        if guess:
            pipe.hget(f"{root}f:{guess}", job_id)
        else:
            pipe.exists(f"{root}fp")  # keeps the reply's shape
        pipe.hget(f"{root}fp", job_id)
        live, raw, record, pointer = await pipe.execute()
    if live:
        return live, raw
    if guess and record is not None:
        return {}, record
    if pointer is None:
        return {}, None
    return {}, await c.hget(f"{root}f:{pointer}", job_id)


def job_from_record(job_id: str, raw: str, root: str) -> JobRecord:
    h, _ = ended_hash(job_id, raw)
    return job_from_hash(h, f"{root}f:* {job_id}")


async def page(
    script: Callable[[str, list[Any]], Awaitable[Any]],
    root: str,
    flt: JobFilter,
    after: Key | None,
    budget: int,
) -> tuple[list[JobRecord], Key | None]:
    """Ended jobs matching ``flt`` below ``after``, newest first (the script LIST filters the
    buckets): more than flt.limit of them, or all (then the frontier is None), or those of the
    buckets that ``budget`` records filled (then the frontier is the least key every record
    above which was read)."""
    top = "+inf"
    if after is not None:
        b = math.floor(after[0] / BUCKET_SECONDS)
        # a cursor at a bucket's start (a frontier of this function): that bucket was read
        top = str(b - 1 if after == (b * BUCKET_SECONDS, "") else b)
    status = None if flt.status is None else flt.status.value
    args: list[Any] = ["", top, "" if after is None else repr(after[0]), flt.limit, budget]
    args += [opt(status), opt(flt.task), opt(flt.queue), opt(flt.tenant)]
    how, bucket, *flat = await script("list", args)
    jobs = [job_from_record(flat[i], flat[i + 1], root) for i in range(0, len(flat), 2)]
    jobs = sorted((j for j in jobs if after is None or _key(j) < after), key=_key, reverse=True)
    if len(jobs) > flt.limit:
        jobs = jobs[: flt.limit + 1]
        return jobs, _key(jobs[-1])
    if how == "end":
        return jobs, None
    return jobs, (float(bucket) * BUCKET_SECONDS, "")


def _key(job: JobRecord) -> Key:
    return (job.created_at, job.id)
