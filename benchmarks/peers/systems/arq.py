"""arq: one worker process with ``max_jobs=10`` coroutines.

arq runs only coroutines: the no-op and the sleep (``asyncio.sleep``) run on its event loop,
and the CPU burn goes to a ``ProcessPoolExecutor`` through ``run_in_executor``, the way arq's
documentation shows for synchronous work. arq's newest release caps redis-py below 6, so it
has its own virtual environment (``.venv-peers-arq``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from systems._shared import broker_url, run_async, run_in_pool

PACKAGES = ("arq", "redis", "hiredis")

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


async def noop(ctx: dict[str, Any], sent: float) -> None:
    await run_async("noop", sent)


async def sleep(ctx: dict[str, Any], sent: float) -> None:
    await run_async("sleep", sent)


async def incr(ctx: dict[str, Any], sent: float) -> None:
    await run_async("incr", sent)


async def burn(ctx: dict[str, Any], sent: float) -> None:
    await run_in_pool("burn", sent)


class WorkerSettings:
    functions = (noop, sleep, burn, incr)
    redis_settings = RedisSettings.from_dsn(broker_url())
    max_jobs = int(os.environ.get("PEERS_CONCURRENCY", "10"))
    keep_result = 0  # no result kept
    # everything else is arq's default: poll_delay 0.5 s, job timeout 300 s, no retries


def knobs(config: str) -> list[str]:
    return [
        "worker: `arq systems.arq.WorkerSettings --custom-log-dict systems.arq.LOG_CONFIG`: "
        "1 process, `max_jobs=10` coroutines",
        "no-op and sleep: coroutines on arq's event loop (`asyncio.sleep`)",
        "CPU burn: `run_in_executor` on a `ProcessPoolExecutor` of min(10, cores) = 2 "
        "processes (fork), made on the first burn",
        "results: `keep_result=0` (none kept); logging at WARNING (arq logs 2 lines per job "
        "at INFO)",
        "defaults kept: `poll_delay=0.5` s (arq polls its queue, no blocking wake-up), "
        "`queue_read_limit` 100, job timeout 300 s, acknowledged when done (in-progress key)",
        "submit: `await redis.enqueue_job(name, sent)`; no bulk enqueue",
    ]


def worker(config: str, workload: str, concurrency: int) -> tuple[list[str], dict[str, str]]:
    argv = [
        sys.executable,
        "-m",
        "arq",
        "systems.arq.WorkerSettings",
        "--custom-log-dict",
        "systems.arq.LOG_CONFIG",
    ]
    return argv, {}


class Client:
    def __init__(self, config: str) -> None:
        self.redis: ArqRedis | None = None

    async def open(self) -> None:
        self.redis = await create_pool(RedisSettings.from_dsn(broker_url()))

    async def enqueue(self, workload: str, sent: float) -> None:
        assert self.redis is not None
        await self.redis.enqueue_job(workload, sent)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
