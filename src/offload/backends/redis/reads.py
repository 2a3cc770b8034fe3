"""The Redis backend's multi-key reads: listing jobs through its indexes, and histories."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

import orjson
import redis.asyncio as aioredis

from offload.backends._common import decode_cursor, encode_cursor, ready_age
from offload.backends.redis import ended
from offload.backends.redis.ended import ENDED, Key
from offload.backends.redis.records import (
    ended_hash,
    history_entries,
    job_from_hash,
    transition_from_json,
)
from offload.core.job import JobFilter, JobRecord, Page, QueueStats, Transition
from offload.core.states import Reason, State
from offload.errors import BackendError

T = TypeVar("T")

#: Most index entries one list_jobs call reads while filtering (then it returns a cursor).
LIST_SCAN_BUDGET = 5000


#: The backend's ``_script`` (name, args), retried.
Script = Callable[[str, list[Any]], Awaitable[Any]]


class Run(Protocol):
    """The backend's ``_run``: one Redis call, with redis-py errors mapped to offload's."""

    async def __call__(
        self, call: Callable[[aioredis.Redis], Awaitable[T]], *, retry: bool = False
    ) -> T: ...


async def list_jobs(run: Run, script: Script, root: str, flt: JobFilter) -> Page:
    """Newest first: the jobs that have not ended from their indexes (_live), the ended ones
    from their buckets (ended.page), merged; each source reads at most LIST_SCAN_BUDGET
    entries, and a page ends at the higher of their frontiers (then it returns a cursor)."""
    after = decode_cursor(flt.cursor) if flt.cursor is not None else None
    # The live indexes also for an ended status: jobs that ended before buckets stay there.
    sources = [await _live(run, root, flt, after)]
    if flt.status is None or flt.status in ENDED:
        sources.append(await ended.page(script, root, flt, after, LIST_SCAN_BUDGET))
    bounds = [frontier for _, frontier in sources if frontier is not None]
    bound = max(bounds) if bounds else None
    # A job that ended between the two reads is in both: the later read (its end) wins.
    latest = {j.id: j for found, _ in sources for j in found}
    jobs = sorted(latest.values(), key=_key, reverse=True)
    if bound is not None:
        jobs = [j for j in jobs if _key(j) >= bound]
    if len(jobs) > flt.limit:
        jobs = jobs[: flt.limit]
        return Page(jobs, encode_cursor(*_key(jobs[-1])))
    return Page(jobs, None if bound is None else encode_cursor(*bound))


def _key(job: JobRecord) -> Key:
    return (job.created_at, job.id)


async def _live(
    run: Run, root: str, flt: JobFilter, after: Key | None
) -> tuple[list[JobRecord], Key | None]:
    """From the smallest index that fits the filter, checking the rest of the filter on each
    job: more than flt.limit matches, or all (frontier None), or what LIST_SCAN_BUDGET entries
    held (frontier: the last entry read)."""
    indexes = [f"{root}i:all"]
    for name, value in (
        ("st", flt.status.value if flt.status else None),
        ("tk", flt.task),
        ("q", flt.queue),
        ("tn", flt.tenant),
    ):
        if value is not None:
            indexes.append(f"{root}i:{name}:{value}")
    index = indexes[0]
    if len(indexes) > 1:

        async def sizes(c: aioredis.Redis) -> list[int]:
            async with c.pipeline(transaction=False) as pipe:
                for key in indexes[1:]:
                    pipe.zcard(key)
                return list(await pipe.execute())

        counts = await run(sizes, retry=True)
        index = min(zip(counts, indexes[1:], strict=True))[1]
    top = "+inf" if after is None else repr(after[0])
    found: list[JobRecord] = []
    scanned = 0
    last: Key | None = None
    while len(found) <= flt.limit and scanned < LIST_SCAN_BUDGET:
        batch = max(2 * flt.limit, 100)
        entries: list[tuple[str, float]] = await run(
            lambda c, start=scanned, n=batch: c.zrevrangebyscore(  # type: ignore[misc]
                index, top, "-inf", start=start, num=n, withscores=True
            ),
            retry=True,
        )
        if not entries:
            return found, None
        scanned += len(entries)
        wanted = [(i, s) for i, s in entries if after is None or (s, i) < after]
        for record in await fetch(run, root, [i for i, _ in wanted]):
            if matches(record, flt):
                found.append(record)
        last = (entries[-1][1], entries[-1][0])
    return found, last


async def fetch(run: Run, root: str, ids: Sequence[str]) -> list[JobRecord]:
    if not ids:
        return []

    async def read(c: aioredis.Redis) -> list[dict[str, str]]:
        async with c.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(f"{root}j:{job_id}")
            return list(await pipe.execute())

    hashes = await run(read, retry=True)
    return [job_from_hash(h, f"{root}j:{i}") for i, h in zip(ids, hashes, strict=True) if h]


async def get(run: Run, root: str, job_id: str) -> JobRecord | None:
    live, other = await run(lambda c: ended.lookup(c, root, job_id), retry=True)
    if live:
        return job_from_hash(live, f"{root}j:{job_id}")
    return None if other is None else ended.job_from_record(job_id, other, root)


async def history(run: Run, root: str, job_id: str) -> list[Transition]:
    job, other = await run(lambda c: ended.lookup(c, root, job_id), retry=True)
    where = f"{root}h:{job_id}"
    compact: list[list[Any]] = []
    raw: list[str] = []
    try:
        if job:  # a job that ended before buckets has its history in hash fields h1, h2...
            raw = other
            compact = [orjson.loads(job[f"h{i}"]) for i in range(1, len(job)) if f"h{i}" in job]
        elif other is not None:
            where = f"{root}f:* {job_id}"
            job, compact = ended_hash(job_id, other)
        if "created_at" not in job:
            return []
        first = Transition(
            job_id,
            float(job["created_at"]),
            None,
            State(job["submitted_as"]),
            Reason.SUBMITTED,
            0,
            0,
        )
        return [
            first,
            *history_entries(job_id, job, compact),
            *(transition_from_json(job_id, e) for e in raw),
        ]
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise BackendError(f"corrupt history under Redis key {where!r}: {exc}") from None


def matches(job: JobRecord, flt: JobFilter) -> bool:
    return (
        (flt.status is None or job.status is flt.status)
        and (flt.task is None or job.task == flt.task)
        and (flt.queue is None or job.queue == flt.queue)
        and (flt.tenant is None or job.tenant == flt.tenant)
    )


#: Due scheduled jobs (not promoted yet: no claim ran since they came due) one stats call reads
#: at most, oldest first, to find each queue's oldest.
DUE_SCAN_BUDGET = 10_000


async def stats(run: Run, root: str, now: float) -> list[QueueStats]:
    """Counts from the counts hash; each queue's oldest ready job from the heads of its
    ready sets (one per priority, limited jobs and suspects apart) and the due schedule."""
    raw: dict[str, str] = await run(
        lambda c: cast(Awaitable[dict[str, str]], c.hgetall(f"{root}counts")), retry=True
    )
    counts: dict[str, dict[State, int]] = {}
    for field, value in raw.items():
        queue, _, status = field.rpartition("\0")
        if int(value) > 0:
            counts.setdefault(queue, {})[State(status)] = int(value)
    queued = [q for q, c in counts.items() if c.get(State.QUEUED)]
    oldest = await _ready_heads(run, root, queued)
    waiting = {q for q, c in counts.items() if c.get(State.SCHEDULED)}
    for queue, due in (await _due_heads(run, root, now, waiting)).items():
        oldest[queue] = min(due, oldest.get(queue, due))
    return [QueueStats(q, c, ready_age(now, oldest.get(q))) for q, c in sorted(counts.items())]


async def _ready_heads(run: Run, root: str, queues: list[str]) -> dict[str, float]:
    """Per queue, the least due time at the heads of its ready sets (two round trips)."""

    async def read(c: aioredis.Redis) -> tuple[list[tuple[str, str]], list[Any]]:
        async with c.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.zrange(f"{root}qp:{q}", 0, -1)
                pipe.zrange(f"{root}cp:{q}", 0, -1)
            prios = await pipe.execute()
        sets = [(q, f"{root}s:{q}") for q in queues]  # (queue, key): a name may hold a ':'
        for n, q in enumerate(queues):
            sets += [(q, f"{root}q:{q}:{p}") for p in prios[2 * n]]
            sets += [(q, f"{root}c:{q}:{p}") for p in prios[2 * n + 1]]
        async with c.pipeline(transaction=False) as pipe:
            for _, key in sets:
                pipe.zrange(key, 0, 0, withscores=True)
            return sets, await pipe.execute()

    sets, heads = await run(read, retry=True)
    oldest: dict[str, float] = {}
    for (queue, _), head in zip(sets, heads, strict=True):
        if head:
            due = float(head[0][1])
            oldest[queue] = min(due, oldest.get(queue, due))
    return oldest


async def _due_heads(run: Run, root: str, now: float, queues: set[str]) -> dict[str, float]:
    """Per queue of ``queues``, its oldest scheduled job due by ``now``, from the schedule read
    oldest first until every queue is found (at most DUE_SCAN_BUDGET entries)."""
    oldest: dict[str, float] = {}
    start, page = 0, 500
    while queues - set(oldest) and start < DUE_SCAN_BUDGET:
        due = await _due_page(run, root, now, start, page)
        if not due:
            break
        ids = [job_id for job_id, _ in due]
        for queue, (_, at) in zip(await _queues_of(run, root, ids), due, strict=True):
            if queue is not None and queue not in oldest:
                oldest[queue] = float(at)
        start += page
    return oldest


async def _due_page(
    run: Run, root: str, now: float, start: int, num: int
) -> list[tuple[str, float]]:
    async def read(c: aioredis.Redis) -> list[tuple[str, float]]:
        due = c.zrangebyscore(f"{root}sched", "-inf", repr(now), start, num, withscores=True)
        return cast(list[tuple[str, float]], await due)

    return await run(read, retry=True)


async def _queues_of(run: Run, root: str, ids: list[str]) -> list[str | None]:
    async def read(c: aioredis.Redis) -> list[str | None]:
        async with c.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(f"{root}j:{job_id}", "queue")
            return cast(list[str | None], await pipe.execute())

    return await run(read, retry=True)
