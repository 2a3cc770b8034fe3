"""What one SQLite claim costs while many jobs wait for one full concurrency key.

    .venv/bin/python benchmarks/sqlite_blocked_claims.py

For each size, N jobs of key A (``key_concurrency=1``, one of them running) wait ahead of a
job of another key; it times the claim that finds that job (median of 20). A database in a
temp folder next to this script, ``synchronous=normal``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from offload.backends.sqlite import SQLiteBackend
from offload.core.ids import new_job_id
from offload.core.job import Lease, NewJob
from offload.core.limits import Limits

LIMITS = Limits(key_concurrency=1)


def job(key: str) -> NewJob:
    return NewJob(id=new_job_id(), task="t", args=[], kwargs={}, concurrency_key=key, limits=LIMITS)


async def measure(n: int) -> float:
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as folder:
        backend = SQLiteBackend(str(Path(folder) / "jobs.db"), synchronous="normal")
        await backend.open()
        for _ in range(0, n, 1000):
            await backend.submit([job("A") for _ in range(1000)])
        await backend.claim("w", {"default": 10}, 1, 30.0)  # A's one slot is taken
        times = []
        for _ in range(20):
            await backend.submit([job(new_job_id())])
            started = time.perf_counter()
            [found] = await backend.claim("w", {"default": 10}, 1, 30.0)
            times.append((time.perf_counter() - started) * 1000)
            await backend.complete(Lease(found.id, found.token), None)
        await backend.close()
    return statistics.median(times)


async def main() -> None:
    for n in (1_000, 10_000, 50_000):
        print(f"{n:,} jobs waiting for a full key: claim {await measure(n):.2f} ms median")


if __name__ == "__main__":
    asyncio.run(main())
