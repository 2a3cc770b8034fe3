"""Ended Redis jobs: read from the bucket of their creation time (see retire() in prelude.lua).

A job that ended has no key of its own: its compact record is a field of ``f:<B>``, B its
creation time over BUCKET_SECONDS; ``get`` finds B from the id's time (its first 12 hex
digits, ms) or, for the few jobs whose id's time is in another bucket, the pointer hash
``fp``. A full bucket (BUCKET_FULL records) takes no more: the jobs of its second then go
to the bucket of their slice of it (see retire() in prelude.lua). Listing (the script LIST)
walks the buckets of ``fb`` newest first, each filtered whole in Redis, a slice with its
second's own bucket.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from string import hexdigits
from typing import Any

import redis.asyncio as aioredis

from offload.backends.redis.records import ended_hash, job_from_hash, opt
from offload.backends.redis.scripts import BUCKET_SECONDS, BUCKET_SLICES
from offload.core.job import JobFilter, JobRecord
from offload.core.states import State

#: A key of the listing order: (created_at, id), newest first.
Key = tuple[float, str]
#: The statuses of ended jobs (only in buckets); the others are only in the live indexes.
ENDED = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})


def id_buckets(job_id: str) -> list[str]:
    """The buckets an ended job is found in without a pointer (see id_homes() in prelude.lua):
    those of its id's time (its second's, its slice's and the next slice's); [] for an id
    that is not a time id."""
    head = job_id[:12]
    if len(head) < 12 or any(c not in hexdigits for c in head):
        return []
    u = int(head, 16) / 1000 / BUCKET_SECONDS
    b = math.floor(u)
    s = math.floor((u - b) * BUCKET_SLICES)
    nb, ns = (b + 1, 0) if s + 1 == BUCKET_SLICES else (b, s + 1)
    return [str(b), f"{b}.{s}", f"{nb}.{ns}"]


async def lookup(c: aioredis.Redis, root: str, job_id: str) -> tuple[dict[str, str], Any]:
    """The job's live hash and history list, or ({}, its ended record or None); one
    MULTI for the places a job can be, a second read through a pointer."""
    guesses = id_buckets(job_id)
    async with c.pipeline(transaction=True) as pipe:
        pipe.hgetall(f"{root}j:{job_id}")
        pipe.lrange(f"{root}h:{job_id}", 0, -1)
        pipe.hget(f"{root}fp", job_id)
        for guess in guesses:
            pipe.hget(f"{root}f:{guess}", job_id)
        live, raw, pointer, *records = await pipe.execute()
    if live:
        return live, raw
    for record in records:
        if record is not None:
            return {}, record
    if pointer is None:
        return {}, None
    return {}, await c.hget(f"{root}f:{pointer}", job_id)


def job_from_record(job_id: str, raw: str, root: str) -> JobRecord:
    h, _ = ended_hash(job_id, raw)
    return job_from_hash(h, f"{root}f:* {job_id}")


#: Records one LIST script call reads at most (it blocks the server while it runs): a page
#: that needs more takes several calls.
SCRIPT_BUDGET = 1000


async def page(
    script: Callable[[str, list[Any]], Awaitable[Any]],
    root: str,
    flt: JobFilter,
    after: Key | None,
    budget: int,
) -> tuple[list[JobRecord], Key | None]:
    """Ended jobs matching ``flt`` below ``after``, newest first (the script LIST filters the
    buckets, SCRIPT_BUDGET records a call at most): more than flt.limit of them, or all (then
    the frontier is None), or those of the buckets that ``budget`` records filled (then the
    frontier is the least key every record above which was read)."""
    found: list[Found] = []  # decoded only for the page
    cursor, scanned, skip = after, 0, ""
    while True:
        how, frontier, more, n = await _call(script, flt, cursor, skip, SCRIPT_BUDGET)
        found += [f for f in more if cursor is None or f[0] < cursor]
        scanned += n
        if frontier is None:
            break
        # every record from the frontier up was read (some below it too)
        if how == "more" or scanned >= budget or _above(found, frontier) > flt.limit:
            break
        cursor = frontier
        # the frontier's second's own bucket was read with the slice the frontier starts
        b = math.floor(frontier[0] / BUCKET_SECONDS)
        skip = "" if frontier[0] / BUCKET_SECONDS == b else str(b)
    # by id: a record is found once (the skip above), this only makes sure of it
    found = list({key[1]: (key, raw) for key, raw in found}.values())
    if frontier is not None:
        found = [f for f in found if f[0] >= frontier]
    found.sort(key=lambda f: f[0], reverse=True)
    jobs = [job_from_record(key[1], raw, root) for key, raw in found[: flt.limit + 1]]
    if len(jobs) > flt.limit:
        return jobs, _key(jobs[-1])
    return jobs, frontier


#: A record the script found: its key, its JSON.
Found = tuple[Key, str]


def _above(found: list[Found], frontier: Key) -> int:
    return sum(1 for key, _ in found if key >= frontier)


async def _call(
    script: Callable[[str, list[Any]], Awaitable[Any]],
    flt: JobFilter,
    after: Key | None,
    skip: str,
    budget: int,
) -> tuple[str, Key | None, list[Found], int]:
    """One LIST call: (how, its frontier or None at the end, the limit + 1 first records
    after ``after``, records read); skip: the second whose own bucket was read already."""
    status = None if flt.status is None else flt.status.value
    args: list[Any] = ["", _top(after), "" if after is None else repr(after[0]), flt.limit]
    args += [budget, opt(status), opt(flt.task), opt(flt.queue), opt(flt.tenant), skip]
    args.append("" if after is None else after[1])
    how, score, n, *flat = await script("list", args)
    found = [((_created(flat[i + 1]), flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]
    if how == "end":
        return how, None, found, int(n)
    return how, (_start(float(score)) * BUCKET_SECONDS, ""), found, int(n)


def _created(raw: str) -> float:
    """A record's created_at, read from its head (a record starts with it, as a string)."""
    if raw.startswith('["'):
        end = raw.find('"', 2)
        if end > 2:
            try:
                return float(raw[2:end])
            except ValueError:
                pass
    return job_from_record("?", raw, "").created_at  # corrupt: raises BackendError


def _start(score: float) -> float:
    """The first time (over BUCKET_SECONDS) of the bucket with this score in fb."""
    b = math.floor(score)
    if score == b:
        return float(b)
    return b + round((score - b) * 2 * BUCKET_SLICES - 1) / BUCKET_SLICES


def _top(after: Key | None) -> str:
    """The highest score in fb of a bucket that may hold a record below ``after``: that of
    the slice of its time (a second's own bucket is read with its slices), exclusive for a
    frontier at a slice's start (that slice was read)."""
    if after is None:
        return "+inf"
    u = after[0] / BUCKET_SECONDS
    b = math.floor(u)
    s = math.floor((u - b) * BUCKET_SLICES)
    score = repr(b + (s + 1) / (2 * BUCKET_SLICES))
    if after[1] == "" and u == b + s / BUCKET_SLICES:
        return "(" + (repr(float(b)) if s == 0 else score)
    return score


def _key(job: JobRecord) -> Key:
    return (job.created_at, job.id)
