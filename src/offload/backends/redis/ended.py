"""Ended Redis jobs: read from the bucket of their creation time (see retire() in prelude.lua).

A job that ended has no key of its own: its compact record is a field of ``f:<B>``, B its
creation time over BUCKET_SECONDS; ``get`` finds B from the id's time (its first 12 hex
digits, ms) or, for the few jobs whose id's time is in another bucket, the pointer hash
``fp``. Listing walks the buckets of ``fb`` newest first, reading each whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from string import hexdigits
from typing import Any

import orjson
import redis.asyncio as aioredis

from offload.backends.redis.records import ended_hash, job_from_hash
from offload.backends.redis.scripts import BUCKET_SECONDS, ENDED_DEFAULTS, ENDED_FIELDS
from offload.core.job import JobFilter, JobRecord
from offload.core.states import State

#: A key of the listing order: (created_at, id), newest first.
Key = tuple[float, str]
#: The statuses of ended jobs (only in buckets); the others are only in the live indexes.
ENDED = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
_AT = {name: i + 2 for i, name in enumerate(ENDED_FIELDS)}
#: Most buckets one listing round trip reads.
_MOST_BUCKETS = 32


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


def _wanted(rec: list[Any], flt: JobFilter) -> bool:
    def value(name: str) -> Any:
        i = _AT[name]
        got = rec[i] if i < len(rec) else 0
        return got if isinstance(got, str) else ENDED_DEFAULTS.get(name)

    return (
        (flt.status is None or value("status") == flt.status.value)
        and (flt.task is None or value("task") == flt.task)
        and (flt.queue is None or value("queue") == flt.queue)
        and (flt.tenant is None or value("tenant") == flt.tenant)
    )


async def page(
    run: Any, root: str, flt: JobFilter, after: Key | None, budget: int
) -> tuple[list[JobRecord], Key | None]:
    """Ended jobs matching ``flt`` below ``after``, newest first: at least limit + 1 of them
    unless the buckets run out (then the frontier is None) or ``budget`` records were read
    (then it is the least key every record above which was read)."""
    top: Any = "+inf" if after is None else math.floor(after[0] / BUCKET_SECONDS)
    found: list[tuple[Key, str, str]] = []
    start, scanned, width = 0, 0, 1
    while True:
        names: list[str] = await run(
            lambda c, s=start, n=width: c.zrevrangebyscore(f"{root}fb", top, "-inf", s, n),
            retry=True,
        )
        if not names:
            return _records(found, root), None
        start += len(names)
        width = min(2 * width, _MOST_BUCKETS)
        buckets = await run(lambda c, ns=names: _read(c, root, ns), retry=True)
        for name, bucket in zip(names, buckets, strict=True):
            scanned += len(bucket)
            found += _matches(bucket, flt, after)
            if len(found) > flt.limit:
                found = found[: flt.limit + 1]
                return _records(found, root), found[-1][0]
            if scanned >= budget:
                return _records(found, root), (float(name) * BUCKET_SECONDS, "")


async def _read(c: aioredis.Redis, root: str, names: Sequence[str]) -> list[dict[str, str]]:
    async with c.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(f"{root}f:{name}")
        return list(await pipe.execute())


def _matches(
    bucket: dict[str, str], flt: JobFilter, after: Key | None
) -> list[tuple[Key, str, str]]:
    """One bucket's records that match, newest first."""
    out = []
    for job_id, raw in bucket.items():
        rec = orjson.loads(raw)
        key = (float(rec[_AT["created_at"]]), job_id)
        if (after is None or key < after) and _wanted(rec, flt):
            out.append((key, job_id, raw))
    out.sort(reverse=True)
    return out


def _records(found: list[tuple[Key, str, str]], root: str) -> list[JobRecord]:
    return [job_from_record(job_id, raw, root) for _, job_id, raw in found]
