"""How fast pruning deletes finished jobs (jobs/s), on SQLite and Redis.

Fills a fresh backend with ``--jobs`` finished no-op jobs (through the backend API: submit,
claim, complete) whose ids are made as ``App.submit`` makes them (``new_job_id``: time-ordered,
so the oldest jobs sit side by side in the id index; ``--random-ids``: uuid4 ids, which spread
each batch's deletions over the whole index, the worst case), moves its clock past the
retention for succeeded jobs, then times ``backend.prune(batch, policy)`` until nothing is
due; then does the same for the count cap (``max_finished``). Run from the repository root::

    .venv/bin/python benchmarks/prune_bench.py --backend sqlite --jobs 50000
    .venv/bin/python benchmarks/prune_bench.py --backend redis --jobs 50000

Redis uses a fresh namespace on ``--redis`` (default 127.0.0.1:6379/15), deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import redis

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.ids import new_job_id
from offload.core.job import Lease, NewJob
from offload.core.retention import Retention, RetentionPolicy


def open_backend(kind: str, folder: Path, clock: ManualClock, redis_url: str) -> Backend:
    if kind == "sqlite":
        from offload.backends.sqlite import SQLiteBackend

        return SQLiteBackend(str(folder / "jobs.db"), clock=clock)
    from offload.backends.redis import RedisBackend

    return RedisBackend(f"{redis_url}?prefix=prunebench{uuid.uuid4().hex[:8]}", clock=clock)


def job_id(random_ids: bool) -> str:
    return uuid.uuid4().hex if random_ids else new_job_id()


async def fill(backend: Backend, jobs: int, random_ids: bool, chunk: int = 500) -> None:
    """``jobs`` succeeded no-op jobs, ``chunk`` at a time."""
    done = 0
    while done < jobs:
        n = min(chunk, jobs - done)
        await backend.submit([NewJob(job_id(random_ids), "noop", [], {}) for _ in range(n)])
        claimed = await backend.claim("bench", {"default": n}, n, 300.0)
        await asyncio.gather(*(backend.complete(Lease(j.id, j.token), None) for j in claimed))
        done += len(claimed)


async def drain(backend: Backend, batch: int, policy: RetentionPolicy) -> tuple[int, float]:
    """Prune until nothing is due: (jobs deleted, seconds)."""
    total, start = 0, time.perf_counter()
    while pruned := await backend.prune(batch, policy):
        total += pruned
    return total, time.perf_counter() - start


async def measure(kind: str, jobs: int, batch: int, redis_url: str, random_ids: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        clock = ManualClock()
        backend = open_backend(kind, Path(folder), clock, redis_url)
        await backend.open()
        try:
            for label, policy in (
                ("by age", RetentionPolicy(Retention(succeeded=60), max_finished=None)),
                ("by count", RetentionPolicy(Retention(None, None, None), max_finished=1000)),
            ):
                t0 = time.perf_counter()
                await fill(backend, jobs, random_ids)
                filled = time.perf_counter() - t0
                clock.advance(61)
                n, seconds = await drain(backend, batch, policy)
                ids = " (random ids)" if random_ids else ""
                print(
                    f"{kind:6} {label:8} batch {batch:5}{ids}: pruned {n} jobs in {seconds:.2f} s "
                    f"= {n / seconds:,.0f} jobs/s (filled {jobs} in {filled:.1f} s)",
                    flush=True,
                )
                await drain(backend, batch, RetentionPolicy(Retention(0, 0, 0)))
        finally:
            await backend.close()
            if kind == "redis":
                client = redis.Redis.from_url(redis_url)
                prefix = getattr(backend, "root", "")
                for key in client.scan_iter(match=f"{prefix}*", count=1000):
                    client.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--random-ids", action="store_true", help="uuid4 ids, not App's")
    ns = parser.parse_args()
    for batch in ns.batch:
        asyncio.run(measure(ns.backend, ns.jobs, batch, ns.redis, ns.random_ids))


if __name__ == "__main__":
    main()
