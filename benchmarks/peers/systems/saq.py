"""SAQ on Redis: one worker process with ``concurrency=10`` coroutines.

The no-op and the sleep (``asyncio.sleep``) run on SAQ's event loop; the CPU burn goes to a
``ProcessPoolExecutor`` through ``run_in_executor`` (SAQ would run a plain function in a thread
pool, where 20 ms burns share one GIL). Jobs are enqueued with ``ttl=-1`` (nothing kept after
they finish).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from saq import Queue

from systems._shared import broker_url, run_async, run_in_pool

PACKAGES = ("saq", "redis", "hiredis")

queue = Queue.from_url(broker_url(), name="peers")


async def noop(ctx: dict[str, Any], *, sent: float) -> None:
    await run_async("noop", sent)


async def sleep(ctx: dict[str, Any], *, sent: float) -> None:
    await run_async("sleep", sent)


async def incr(ctx: dict[str, Any], *, sent: float) -> None:
    await run_async("incr", sent)


async def burn(ctx: dict[str, Any], *, sent: float) -> None:
    await run_in_pool("burn", sent)


settings = {
    "queue": queue,
    "functions": [noop, sleep, burn, incr],
    "concurrency": int(os.environ.get("PEERS_CONCURRENCY", "10")),
}


def knobs(config: str) -> list[str]:
    return [
        "worker: `saq systems.saq.settings --workers 1`: 1 process, `concurrency=10` "
        "coroutines; SAQ's default logging (errors only)",
        "no-op and sleep: coroutines on SAQ's event loop (`asyncio.sleep`)",
        "CPU burn: `run_in_executor` on a `ProcessPoolExecutor` of min(10, cores) = 2 "
        "processes (fork), made on the first burn",
        "results: `ttl=-1` on every job (nothing kept after it finishes)",
        "defaults kept: blocking dequeue (`BLMOVE`, no polling), job timeout 10 s, 1 attempt, "
        "sweeps and stats every 60 s, no heartbeat",
        "submit: `await queue.enqueue(name, sent=sent, ttl=-1)`; no bulk enqueue "
        "(`queue.map` enqueues one by one and waits for the results)",
    ]


def worker(config: str, workload: str, concurrency: int) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-m", "saq", "systems.saq.settings", "--workers", "1"], {}


class Client:
    def __init__(self, config: str) -> None:
        self.queue = Queue.from_url(broker_url(), name="peers")

    async def open(self) -> None:
        await self.queue.connect()

    async def enqueue(self, workload: str, sent: float) -> None:
        await self.queue.enqueue(workload, sent=sent, ttl=-1)

    async def close(self) -> None:
        await self.queue.disconnect()
