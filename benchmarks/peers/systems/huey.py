"""Huey with ``RedisHuey``: a consumer of 10 workers, threads (no-op and sleep) or processes
(CPU burn, the worker type Huey's documentation recommends for CPU-bound work).

Every workload runs as a plain function (``time.sleep`` for the sleep). ``results=False``;
``RedisHuey`` is blocking by default (``BRPOP``, no polling).
"""

from __future__ import annotations

import sys

from huey import RedisHuey

from systems._shared import broker_url, run_sync

PACKAGES = ("huey", "redis", "hiredis")

huey = RedisHuey("peers", url=broker_url(), results=False)


@huey.task(name="noop")  # type: ignore[untyped-decorator]
def noop(sent: float) -> None:
    run_sync("noop", sent)


@huey.task(name="sleep")  # type: ignore[untyped-decorator]
def sleep(sent: float) -> None:
    run_sync("sleep", sent)


@huey.task(name="burn")  # type: ignore[untyped-decorator]
def burn(sent: float) -> None:
    run_sync("burn", sent)


@huey.task(name="incr")  # type: ignore[untyped-decorator]
def incr(sent: float) -> None:
    run_sync("incr", sent)


TASKS = {"noop": noop, "sleep": sleep, "burn": burn, "incr": incr}


def kind(workload: str) -> str:
    return "process" if workload == "burn" else "thread"


def knobs(config: str) -> list[str]:
    return [
        "worker: `huey_consumer systems.huey.huey -w 10 -k thread -q` for no-op and sleep "
        "(1 process, 10 threads), `-k process` for the CPU burn (a consumer process and 10 "
        "worker processes)",
        "every workload is a plain function; sleep is `time.sleep(0.01)`",
        "storage: `RedisHuey(results=False)`; blocking dequeue (`BRPOP`, default); no "
        "acknowledgement: a job whose worker dies is lost",
        "`-q`: logging at WARNING (Huey logs 2 lines per job at INFO); periodic-task "
        "scheduler left on (default)",
        "submit: calling the task (`noop(sent)`); no bulk enqueue",
    ]


def worker(config: str, workload: str, concurrency: int) -> tuple[list[str], dict[str, str]]:
    argv = [
        sys.executable,
        "-m",
        "huey.bin.huey_consumer",
        "systems.huey.huey",
        "-w",
        str(concurrency),
        "-k",
        kind(workload),
        "-q",
    ]
    return argv, {}


def scaled(
    config: str, workload: str, concurrency: int, processes: int
) -> dict[str, list[dict[str, object]]]:
    """The many-processes flow: ``-k process -w N`` (N worker processes, one job each)."""
    argv = [sys.executable, "-m", "huey.bin.huey_consumer", "systems.huey.huey"]
    argv += ["-w", str(processes), "-k", "process", "-q"]
    return {"processes": [{"argv": argv, "env": {}}]}


class Client:
    def __init__(self, config: str) -> None:
        self.config = config

    async def open(self) -> None:
        huey.storage.conn.ping()

    async def enqueue(self, workload: str, sent: float) -> None:
        TASKS[workload](sent)

    async def close(self) -> None:
        return None
