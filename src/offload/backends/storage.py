"""What finished jobs hold in the backend, cheaply measured, and the warning before it fills.

:func:`measure` counts ended jobs per queue (the backend's stats) and estimates their bytes:
on Redis ``MEMORY USAGE`` of a sample of the buckets of finished jobs over their jobs, with
the server's ``maxmemory``; on SQLite the file's used pages shared out by row count. The
worker logs :func:`warning` at start and ``/health/ready`` puts it in its details;
``/metrics`` exports the figures as ``offload_finished_jobs`` and ``offload_finished_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from offload.backends.base import Backend
from offload.core.retention import OUTCOMES, RetentionPolicy

#: Bytes per finished job assumed before there is any to sample: a Redis job that ended costs
#: ~310 B in a shared per-second bucket at 10 jobs/s or more, ~630 B at 1 job/s or less (one
#: bucket each; benchmarks/bucket_size.py); the larger, so a projection errs high.
ASSUMED_BYTES_PER_JOB = 650
#: Share of Redis maxmemory the projected finished jobs may take before a warning.
SHARE = 0.5
SAMPLE = 16
#: Sorted-set memberships of a Redis bucket of ended jobs (fb, and fe or ff:<status>) and
#: their cost besides the name (skiplist node, dict entry, score), in bytes.
BUCKET_INDEXES, ENTRY_OVERHEAD = 2, 56


@dataclass(frozen=True, slots=True)
class Storage:
    """Finished jobs per queue, their estimated bytes, and the server's memory cap."""

    kind: str
    finished: dict[str, int] = field(default_factory=dict)
    bytes_per_job: float | None = None  # None: nothing to sample
    maxmemory: int | None = None  # Redis: its maxmemory (0: unset); None: not Redis

    @property
    def total(self) -> int:
        return sum(self.finished.values())

    @property
    def bytes(self) -> int:
        return int(self.total * (self.bytes_per_job or 0))

    def details(self) -> dict[str, Any]:
        return {
            "finished_jobs": self.total,
            "finished_bytes": self.bytes,
            "maxmemory": self.maxmemory,
        }


async def measure(backend: Backend) -> Storage:
    """The finished jobs ``backend`` holds (counts exact, bytes estimated)."""
    ended = {s.queue: sum(s.count(o) for o in OUTCOMES) for s in await backend.stats()}
    kind = type(backend).__name__
    if kind == "RedisBackend":
        per_job, maxmemory = await _redis_bytes(backend)
        return Storage("redis", ended, per_job, maxmemory)
    if kind == "SQLiteBackend":
        return Storage("sqlite", ended, await _sqlite_bytes(backend))
    return Storage(kind, ended)


async def _redis_bytes(backend: Any) -> tuple[float | None, int]:
    """Ended jobs live in shared buckets (f:<B>, see offload.backends.redis.ended): the
    MEMORY USAGE of a sample of buckets and their schedule entries, over their jobs."""
    client, root = backend.client, backend.root
    maxmemory = int((await client.info("memory")).get("maxmemory", 0))
    names = [str(n) for n in await client.zrandmember(f"{root}fb", SAMPLE) or []]
    total, jobs = 0, 0
    for name in names:
        total += int(await client.memory_usage(f"{root}f:{name}") or 0)
        total += BUCKET_INDEXES * (len(name) + ENTRY_OVERHEAD)
        jobs += int(await client.hlen(f"{root}f:{name}"))
    if not jobs:
        return None, maxmemory
    return total / jobs, maxmemory


async def _sqlite_bytes(backend: Any) -> float | None:
    def pages(conn: Any) -> tuple[int, int, int, int]:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        count = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        jobs = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        return size, count, free, jobs

    size, count, free, jobs = await backend._reader.run(pages)
    return (count - free) * size / jobs if jobs else None


def projected(storage: Storage, policy: RetentionPolicy, rate: float) -> float | None:
    """Bytes the finished jobs will hold at ``rate`` jobs/s finishing (0: unknown) under
    ``policy``: per queue the smaller of rate x longest age and its cap; None: unbounded."""
    ages = [policy.default.age(o) for o in OUTCOMES]
    longest = None if None in ages else max(a for a in ages if a is not None)
    by_rate = None if not rate or longest is None else rate * longest
    cap = policy.max_finished
    queues = max(1, len(storage.finished))
    by_cap = None if cap is None else cap * queues
    bounds = [b for b in (by_rate, by_cap) if b is not None]
    if not bounds:
        return None
    return min(bounds) * (storage.bytes_per_job or ASSUMED_BYTES_PER_JOB)


def warning(storage: Storage, policy: RetentionPolicy, rate: float = 0.0) -> str | None:
    """One line when finished jobs may fill Redis; None when they fit."""
    if storage.maxmemory is None:
        return None
    mb = 1024 * 1024
    size = projected(storage, policy, rate)
    where = f"now {storage.total} finished jobs, {storage.bytes / mb:.1f} MB"
    if storage.maxmemory == 0:
        return (
            f"Redis maxmemory is unset ({where}): when memory runs out the host swaps or "
            "kills Redis; set maxmemory (with maxmemory-policy noeviction)"
        )
    if size is None:
        return (
            f"finished jobs are kept without bound ({where}) in Redis with maxmemory "
            f"{storage.maxmemory / mb:.0f} MB; set retain_* or max_finished"
        )
    if size > SHARE * storage.maxmemory:
        return (
            f"finished jobs may reach {size / mb:.0f} MB (rate x retention x "
            f"{storage.bytes_per_job or ASSUMED_BYTES_PER_JOB:.0f} B/job, capped by "
            f"max_finished per queue), above {SHARE:.0%} of Redis maxmemory "
            f"{storage.maxmemory / mb:.0f} MB ({where}); lower retain_* or max_finished, "
            "or raise maxmemory"
        )
    return None


async def check(backend: Backend, policy: RetentionPolicy) -> str | None:
    """The warning for ``backend`` now (None: fine, or it could not be measured)."""
    try:
        return warning(await measure(backend), policy)
    except Exception:  # a figure for a warning: never a reason to fail
        return None
