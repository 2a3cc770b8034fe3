"""The Redis backend's multi-key reads: listing jobs through its indexes, and histories."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

import redis.asyncio as aioredis

from offload.backends._common import decode_cursor, encode_cursor, ready_age
from offload.backends.redis.records import (
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


class Run(Protocol):
    """The backend's ``_run``: one Redis call, with redis-py errors mapped to offload's."""

    async def __call__(
        self, call: Callable[[aioredis.Redis], Awaitable[T]], *, retry: bool = False
    ) -> T: ...


async def list_jobs(run: Run, root: str, flt: JobFilter) -> Page:
    """Newest first from the smallest index that fits the filter, checking the rest of the
    filter on each job; reads at most LIST_SCAN_BUDGET entries, then returns a cursor."""
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
    after = decode_cursor(flt.cursor) if flt.cursor is not None else None
    top = "+inf" if after is None else repr(after[0])
    found: list[JobRecord] = []
    scanned = 0
    last: tuple[float, str] | None = None
    while len(found) <= flt.limit and scanned < LIST_SCAN_BUDGET:
        batch = max(2 * flt.limit, 100)
        entries: list[tuple[str, float]] = await run(
            lambda c, start=scanned, n=batch: c.zrevrangebyscore(  # type: ignore[misc]
                index, top, "-inf", start=start, num=n, withscores=True
            ),
            retry=True,
        )
        if not entries:
            last = None
            break
        scanned += len(entries)
        wanted = [(i, s) for i, s in entries if after is None or (s, i) < after]
        for record in await fetch(run, root, [i for i, _ in wanted]):
            if matches(record, flt):
                found.append(record)
        last = (entries[-1][1], entries[-1][0])
    if len(found) > flt.limit:
        page = found[: flt.limit]
        return Page(page, encode_cursor(page[-1].created_at, page[-1].id))
    cursor = encode_cursor(*last) if last is not None and scanned >= LIST_SCAN_BUDGET else None
    return Page(found, cursor)


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


async def history(run: Run, root: str, job_id: str) -> list[Transition]:
    key = f"{root}h:{job_id}"
    job_key = f"{root}j:{job_id}"

    async def read(c: aioredis.Redis) -> list[Any]:
        async with c.pipeline(transaction=False) as pipe:
            pipe.hgetall(job_key)
            pipe.lrange(key, 0, -1)
            return list(await pipe.execute())

    job, raw = await run(read, retry=True)
    if "created_at" not in job:
        return []
    try:
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
            *history_entries(job_id, job),
            *(transition_from_json(job_id, e) for e in raw),
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise BackendError(f"corrupt history under Redis key {key!r}: {exc}") from None


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
