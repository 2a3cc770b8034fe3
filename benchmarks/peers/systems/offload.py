"""offload, on Redis (``offload-redis``) or on SQLite (``offload-sqlite``).

The worker is ``python -m offload worker systems.offload:app`` (or ``:cpu_app`` for the CPU
workload), one process with ``--concurrency`` slots. The no-op and sleep tasks are ``async def``
and run on the worker's event loop; the CPU burn is a plain function with
``executor="process"``, so it runs in offload's process pool (``min(concurrency, cores)``
children started by forkserver). ``cpu_app`` exists so that only the CPU workload's worker
starts that pool, as only the CPU workload's worker of taskiq, arq, SAQ or Huey gets one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import offload
from offload.client import SubmitOptions
from systems._shared import run_async, run_sync

PACKAGES = ("offload", "redis", "hiredis", "orjson")
BULK = 1_000  # jobs per asubmit_many call


async def noop(sent: float) -> None:
    await run_async("noop", sent)


async def sleep(sent: float) -> None:
    await run_async("sleep", sent)


async def incr(sent: float) -> None:
    await run_async("incr", sent)


def burn(sent: float) -> None:
    run_sync("burn", sent)


def build_app(backend: str | None, cpu: bool) -> offload.App:
    """The app with the no-op and sleep tasks, or (``cpu``) with the CPU burn alone."""
    app = offload.App(backend)
    if cpu:
        app.task(name="burn", executor="process")(burn)
    else:
        app.task(name="noop")(noop)
        app.task(name="sleep")(sleep)
        app.task(name="incr")(incr)
    return app


app = build_app(None, cpu=False)  # the worker reads $OFFLOAD_BACKEND
cpu_app = build_app(None, cpu=True)


def backend_url(config: str) -> str:
    if config == "offload-sqlite":
        return f"sqlite:///{os.environ['PEERS_SQLITE_PATH']}"
    return f"{os.environ['PEERS_REDIS_URL']}?prefix=peers"


def knobs(config: str) -> list[str]:
    backend = (
        "SQLite file in the run's temp folder, WAL, default `synchronous=FULL` (every submit "
        "COMMIT is fsynced; the worker's claims and outcomes are not fsynced on their own)"
        if config == "offload-sqlite"
        else "Redis, `redis://127.0.0.1:PORT/0?prefix=peers`"
    )
    return [
        f"backend: {backend}",
        "worker: `offload worker systems.offload:app --concurrency 10`: 1 process, 10 slots",
        "no-op and sleep: `async def` tasks on the worker's event loop (`asyncio.sleep`)",
        "CPU burn: `executor='process'`: offload's process pool, min(10, cores) = 2 children "
        "(forkserver, niceness +10), started only by the CPU workload's worker (`:cpu_app`)",
        "delivery: at-least-once (leases, fencing tokens); results, state history and one "
        "history row per transition are always stored (result_ttl 7 days, offload's default)",
        "claim batch 32, lease 30 s, prefetch as many as the slots while jobs are under 50 ms "
        "(defaults); `OFFLOAD_LOG_LEVEL=WARNING` (no line per job)",
        "submit: `await task.asubmit(sent)`; bulk: `app.asubmit_many` of 1,000 prepared jobs",
    ]


def worker(config: str, workload: str, concurrency: int) -> tuple[list[str], dict[str, str]]:
    target = "systems.offload:cpu_app" if workload == "burn" else "systems.offload:app"
    argv = [sys.executable, "-m", "offload", "worker", target, "--concurrency", str(concurrency)]
    return argv, {"OFFLOAD_BACKEND": backend_url(config), "OFFLOAD_LOG_LEVEL": "WARNING"}


def scaled(
    config: str, workload: str, concurrency: int, processes: int
) -> dict[str, list[dict[str, Any]]]:
    """The many-processes flow: ``--processes N`` (one supervisor) and N separate workers."""
    argv, env = worker(config, workload, concurrency)
    modes = {"processes": [{"argv": [*argv, "--processes", str(processes)], "env": env}]}
    if processes > 1:  # with 1, both modes are the same command
        modes["separate"] = [{"argv": argv, "env": env} for _ in range(processes)]
    return modes


class Client:
    def __init__(self, config: str) -> None:
        self.config = config
        self.apps: dict[bool, offload.App] = {}
        self.tasks: dict[str, offload.Task[Any, Any]] = {}

    async def open(self) -> None:
        url = backend_url(self.config)
        self.apps = {cpu: build_app(url, cpu) for cpu in (False, True)}
        for one in self.apps.values():
            await one.backend()
            self.tasks.update({spec.name: offload.Task(one, spec) for spec in one.registry})

    async def enqueue(self, workload: str, sent: float) -> None:
        await self.tasks[workload].asubmit(sent)

    async def bulk(self, workload: str, n: int) -> None:
        one = self.apps[workload == "burn"]
        spec = one.registry.get(workload)
        for start in range(0, n, BULK):
            size = min(BULK, n - start)
            jobs = [one.prepare(spec, (0.0,), {}, SubmitOptions()) for _ in range(size)]
            await one.asubmit_many(jobs)

    async def close(self) -> None:
        for one in self.apps.values():
            await one.aclose()
