"""What one Redis claim costs as the queue grows: distinct priorities, due scheduled jobs.

    .venv/bin/python benchmarks/redis_claim_cost.py [--redis-url redis://127.0.0.1:6379/14]

Each case fills a fresh namespace, then times claims of one job (median of 50, each followed by
its completion so the queue keeps its shape). Figures depend on the machine; run it quietly.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import redis

from offload.backends.redis import RedisBackend
from offload.core.clock import ManualClock
from offload.core.job import Lease, NewJob

CLAIMS = 50


def jobs(n: int, **fields: object) -> list[NewJob]:
    return [NewJob(id=uuid.uuid4().hex, task="t", args=[], kwargs={}, **fields) for _ in range(n)]  # type: ignore[arg-type]


async def claim_ms(backend: RedisBackend) -> tuple[float, float]:
    times = []
    for _ in range(CLAIMS):
        started = time.perf_counter()
        [job] = await backend.claim("w", {"default": 1}, 1, 30.0)
        times.append((time.perf_counter() - started) * 1000)
        await backend.complete(Lease(job.id, job.token), None)
    return statistics.median(times), max(times)


async def case(
    url: str, name: str, fill: list[list[NewJob]], clock: ManualClock, ahead: float
) -> None:
    prefix = f"offload-bench-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(f"{url}?prefix={prefix}", clock=clock)
    await backend.open()
    try:
        for chunk in fill:
            await backend.submit(chunk)
        clock.advance(ahead)
        median, worst = await claim_ms(backend)
        print(f"{name}: claim of one job {median:.2f} ms median, {worst:.2f} ms max ({CLAIMS})")
    finally:
        await backend.close()
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match="{" + prefix + "}*", count=5000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
        client.close()


async def main(url: str) -> None:
    clock = ManualClock()
    await case(url, "1 priority, 2,000 jobs", [jobs(2000)], clock, 0)
    for n in (10_000, 40_000):
        fill = [
            [
                NewJob(id=uuid.uuid4().hex, task="t", args=[], kwargs={}, priority=p)
                for p in range(i, min(i + 2000, n))
            ]
            for i in range(0, n, 2000)
        ]
        await case(url, f"{n:,} distinct priorities", fill, clock, 0)
    delayed = [jobs(2000, delay=60.0) for _ in range(11)]
    await case(url, "22,000 delayed jobs fallen due", delayed, clock, 61.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    asyncio.run(main(parser.parse_args().redis_url))
