"""RQ: ``rq worker-pool`` with 10 workers, each forking a work horse per job (RQ's default).

Every workload runs as a plain function (``time.sleep`` for the sleep). Jobs are enqueued with
``result_ttl=0`` (no result kept); everything else is RQ's default (pickle serializer).
"""

from __future__ import annotations

import sys

from redis import Redis
from rq import Queue

from systems._shared import broker_url, run_sync

PACKAGES = ("rq", "redis", "hiredis")
QUEUE = "peers"
BULK = 1_000  # jobs per enqueue_many call


def noop(sent: float) -> None:
    run_sync("noop", sent)


def sleep(sent: float) -> None:
    run_sync("sleep", sent)


def burn(sent: float) -> None:
    run_sync("burn", sent)


def incr(sent: float) -> None:
    run_sync("incr", sent)


TASKS = {"noop": noop, "sleep": sleep, "burn": burn, "incr": incr}


def knobs(config: str) -> list[str]:
    return [
        "worker: `rq worker-pool -n 10 --logging-level WARNING peers`: a pool process, 10 "
        "worker processes, and each worker forks a work horse per job (default `Worker` class)",
        "every workload is a plain function; sleep is `time.sleep(0.01)`",
        "results: `result_ttl=0` on every job (no result kept); pickle serializer (default)",
        "defaults kept: job timeout 180 s, failure TTL 1 year, worker heartbeats",
        "submit: `queue.enqueue(func, sent, result_ttl=0)`; bulk: `queue.enqueue_many` of "
        "1,000 `Queue.prepare_data(...)` (one pipeline per call)",
    ]


def worker(config: str, workload: str, concurrency: int) -> tuple[list[str], dict[str, str]]:
    argv = [
        sys.executable,
        "-m",
        "rq.cli",
        "worker-pool",
        "-n",
        str(concurrency),
        "-u",
        broker_url(),
        "--logging-level",
        "WARNING",
        QUEUE,
    ]
    return argv, {}


class Client:
    def __init__(self, config: str) -> None:
        self.redis = Redis.from_url(broker_url())
        self.queue = Queue(QUEUE, connection=self.redis)

    async def open(self) -> None:
        self.redis.ping()

    async def enqueue(self, workload: str, sent: float) -> None:
        self.queue.enqueue(TASKS[workload], sent, result_ttl=0)

    async def bulk(self, workload: str, n: int) -> None:
        func = TASKS[workload]
        for start in range(0, n, BULK):
            size = min(BULK, n - start)
            data = [Queue.prepare_data(func, (0.0,), result_ttl=0) for _ in range(size)]
            self.queue.enqueue_many(data)

    async def close(self) -> None:
        self.redis.close()
