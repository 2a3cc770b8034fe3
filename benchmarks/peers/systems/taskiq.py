"""Taskiq with taskiq-redis's ``RedisStreamBroker``: one worker process, 10 async tasks at most.

The no-op and the sleep (``asyncio.sleep``) are ``async def`` tasks; the CPU burn is a plain
function that taskiq runs in its process pool (``--use-process-pool``, only for that workload).
``RedisStreamBroker`` is taskiq-redis's broker with acknowledgements (a Redis stream and a
consumer group); no result backend.
"""

from __future__ import annotations

import sys
from typing import Any

from taskiq_redis import RedisStreamBroker

from systems._shared import broker_url, run_async, run_sync

PACKAGES = ("taskiq", "taskiq-redis", "redis", "hiredis")
PROCESS_POOL = 2  # min(10, cores), as offload's process executor

broker = RedisStreamBroker(url=broker_url(), queue_name="peers")


@broker.task(task_name="noop")
async def noop(sent: float) -> None:
    await run_async("noop", sent)


@broker.task(task_name="sleep")
async def sleep(sent: float) -> None:
    await run_async("sleep", sent)


@broker.task(task_name="incr")
async def incr(sent: float) -> None:
    await run_async("incr", sent)


@broker.task(task_name="burn")
def burn(sent: float) -> None:
    run_sync("burn", sent)


TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "burn": burn, "incr": incr}


def knobs(config: str) -> list[str]:
    return [
        "worker: `taskiq worker systems.taskiq:broker --workers 1 --max-async-tasks 10 "
        "--log-level WARNING`: 1 worker process (plus taskiq's supervisor), at most 10 tasks "
        "at a time",
        "no-op and sleep: `async def` tasks (`asyncio.sleep`)",
        "CPU burn: a plain function run in taskiq's process pool: `--use-process-pool "
        "--max-process-pool-processes 2` (only for that workload)",
        "broker: `RedisStreamBroker` (stream + consumer group, acknowledged after the task "
        "ran: `--ack-type when_saved`, the default; `xread_count` 100), no result backend",
        "defaults kept: argument parsing with pydantic, `--max-prefetch 0`",
        "submit: `await task.kiq(sent)`; no bulk enqueue",
    ]


def worker(config: str, workload: str, concurrency: int) -> tuple[list[str], dict[str, str]]:
    argv = [
        sys.executable,
        "-m",
        "taskiq",
        "worker",
        "systems.taskiq:broker",
        "--workers",
        "1",
        "--max-async-tasks",
        str(concurrency),
        "--log-level",
        "WARNING",
    ]
    if workload == "burn":
        argv += ["--use-process-pool", "--max-process-pool-processes", str(PROCESS_POOL)]
    return argv, {}


def scaled(
    config: str, workload: str, concurrency: int, processes: int
) -> dict[str, list[dict[str, object]]]:
    """The many-processes flow: ``--workers N`` (N processes of C async slots each)."""
    argv, env = worker(config, workload, concurrency)
    argv[argv.index("--workers") + 1] = str(processes)
    return {"processes": [{"argv": argv, "env": env}]}


class Client:
    def __init__(self, config: str) -> None:
        self.config = config

    async def open(self) -> None:
        await broker.startup()

    async def enqueue(self, workload: str, sent: float) -> None:
        await TASKS[workload].kiq(sent)

    async def close(self) -> None:
        await broker.shutdown()
