"""What every system's tasks share: the workloads and the completion counter.

This module is imported by the tasks of every system, in whichever virtual environment that
system runs, so it uses only the standard library and redis-py (which every venv has).

Every task ends with one call to ``record``/``arecord``: one Lua script on the counter
database (``$PEERS_COUNTER_URL``, a different Redis database than the systems' own) that
increments the done counter and stamps the Redis ``TIME`` of the first and of the latest
completion. A pickup sample (``sent > 0``) also pushes the time the task body started onto a
list that the client pops. The harness detects completion the same way for every system: it
reads that counter.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import redis
import redis.asyncio as aioredis

WORKLOADS = ("noop", "sleep", "burn")
SLEEP_SECONDS = 0.010  # the I/O-like workload
BURN_SECONDS = 0.020  # CPU seconds of the calling thread that the CPU workload uses

#: Counter keys (on the counter database, never touched by the systems themselves).
DONE, FIRST, LAST, STARTED = "peers:done", "peers:first", "peers:last", "peers:started"

RECORD_LUA = """
local n = redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
if n == 1 then redis.call('SET', KEYS[2], now) end
redis.call('SET', KEYS[3], now)
if ARGV[1] ~= '' then redis.call('RPUSH', KEYS[4], ARGV[1]) end
return n
"""


def env(name: str, default: str | None = None) -> str:
    """A ``PEERS_*`` setting the harness passes to every process it starts."""
    value = os.environ.get(f"PEERS_{name}", default)
    if value is None:
        raise RuntimeError(f"PEERS_{name} is not set: start this through benchmarks/peers/run.py")
    return value


def broker_url() -> str:
    """The systems' own Redis database (``redis://127.0.0.1:PORT/0``)."""
    return env("REDIS_URL", "redis://127.0.0.1:6379/0")


def counter_url() -> str:
    return env("COUNTER_URL", "redis://127.0.0.1:6379/1")


def burn() -> None:
    """Use BURN_SECONDS of this thread's CPU time (a fixed cost per job, whatever the GIL does)."""
    until = time.thread_time() + BURN_SECONDS
    while time.thread_time() < until:
        for _ in range(2_000):
            pass


def _argv(sent: float, started: float) -> list[str]:
    return [repr(started) if sent > 0 else ""]


_KEYS = [DONE, FIRST, LAST, STARTED]
_sync: dict[int, Any] = {}  # pid -> registered script (a forked child makes its own)
_async: dict[tuple[int, int], Any] = {}  # (pid, id(event loop)) -> registered script


def record(sent: float, started: float) -> None:
    """Count one finished job (synchronous tasks)."""
    script = _sync.get(os.getpid())
    if script is None:
        script = redis.Redis.from_url(counter_url()).register_script(RECORD_LUA)
        _sync[os.getpid()] = script
    script(keys=_KEYS, args=_argv(sent, started))


async def arecord(sent: float, started: float) -> None:
    """Count one finished job (coroutine tasks); one client per process and event loop."""
    import asyncio

    key = (os.getpid(), id(asyncio.get_running_loop()))
    script = _async.get(key)
    if script is None:
        script = aioredis.Redis.from_url(counter_url()).register_script(RECORD_LUA)
        _async[key] = script
    await script(keys=_KEYS, args=_argv(sent, started))


def run_sync(workload: str, sent: float) -> None:
    """The body of a synchronous task (thread, prefork or process pools): time.sleep."""
    started = time.time()
    if workload == "sleep":
        time.sleep(SLEEP_SECONDS)
    elif workload == "burn":
        burn()
    record(sent, started)


_pools: dict[int, ProcessPoolExecutor] = {}


def process_pool(concurrency: int = 10) -> ProcessPoolExecutor:
    """The process pool an async-native system (arq, SAQ) runs CPU burns in, made on first use:
    ``min(concurrency, cores)`` processes, as offload's process executor has."""
    pool = _pools.get(os.getpid())
    if pool is None:
        pool = ProcessPoolExecutor(max_workers=min(concurrency, os.cpu_count() or 1))
        _pools[os.getpid()] = pool
    return pool


async def run_in_pool(workload: str, sent: float) -> None:
    """Run a synchronous task body in ``process_pool()`` from a coroutine task."""
    import asyncio

    await asyncio.get_running_loop().run_in_executor(process_pool(), run_sync, workload, sent)


async def run_async(workload: str, sent: float) -> None:
    """The body of a coroutine task: asyncio.sleep (a CPU burn is never run this way)."""
    import asyncio

    started = time.time()
    if workload == "sleep":
        await asyncio.sleep(SLEEP_SECONDS)
    elif workload == "burn":
        raise RuntimeError("CPU burns run in a process pool, not on the event loop")
    await arecord(sent, started)
