"""What every system's tasks share: the workloads and how a task reports that it finished.

This module is imported by the tasks of every system, in whichever virtual environment that
system runs, so it uses only the standard library and redis-py (which every venv has).

Every task ends with one call to ``record``/``arecord``. A drained job sends one UDP datagram
to the harness (``$PEERS_TALLY_PORT`` on 127.0.0.1), which counts them and stamps the first and
the latest arrival: a ``sendto`` costs the same few microseconds from a thread, a forked process
or a coroutine, so every system pays the same small, non-blocking price for being measured.
(A round trip to Redis would cost an async task twice what it costs a thread: redis-py's asyncio
client spends about twice the CPU per call of its synchronous one.) A pickup sample
(``sent > 0``) also pushes the time its body started onto a Redis list, which the client pops:
it is sent after the start was stamped, so its cost is not in the figure.
"""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import redis
import redis.asyncio as aioredis

#: ``incr`` makes one Redis call (INCR on the counter database): issue 22's web-flow workload.
WORKLOADS = ("noop", "sleep", "burn", "incr")
SLEEP_SECONDS = 0.010  # the I/O-like workload
BURN_SECONDS = 0.020  # CPU seconds of the calling thread that the CPU workload uses

#: The list (on the counter database, never touched by the systems) of pickup samples' starts.
STARTED = "peers:started"
#: The counter the ``incr`` workload increments (counter database): one Redis call per job,
#: what a web app's job that touches its own data costs at least.
INCR_KEY = "peers:incr"


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


_tally: dict[int, tuple[socket.socket, tuple[str, int]]] = {}  # pid -> socket, harness address
_sync: dict[int, Any] = {}  # pid -> client (a forked child makes its own)
_async: dict[tuple[int, int], Any] = {}  # (pid, id(event loop)) -> client


def tally() -> None:
    """Tell the harness that one job finished: one datagram, no reply awaited."""
    entry = _tally.get(os.getpid())
    if entry is None:
        entry = (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
            ("127.0.0.1", int(env("TALLY_PORT"))),
        )
        _tally[os.getpid()] = entry
    entry[0].sendto(b"1", entry[1])


def sync_counter() -> Any:
    """This process's synchronous client of the counter database (a forked child makes its own)."""
    client = _sync.get(os.getpid())
    if client is None:
        client = _sync[os.getpid()] = redis.Redis.from_url(counter_url())
    return client


def async_counter() -> Any:
    """This process's and event loop's asyncio client of the counter database."""
    import asyncio

    key = (os.getpid(), id(asyncio.get_running_loop()))
    client = _async.get(key)
    if client is None:
        client = _async[key] = aioredis.Redis.from_url(counter_url())
    return client


def record(sent: float, started: float) -> None:
    """Count one finished job (synchronous tasks); a pickup sample also reports its start."""
    if sent > 0:
        sync_counter().rpush(STARTED, repr(started))
    tally()


async def arecord(sent: float, started: float) -> None:
    """Count one finished job (coroutine tasks); one client per process and event loop."""
    if sent > 0:
        await async_counter().rpush(STARTED, repr(started))
    tally()


def run_sync(workload: str, sent: float) -> None:
    """The body of a synchronous task (thread, prefork or process pools): time.sleep."""
    started = time.time()
    if workload == "sleep":
        time.sleep(SLEEP_SECONDS)
    elif workload == "burn":
        burn()
    elif workload == "incr":
        sync_counter().incr(INCR_KEY)
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
    elif workload == "incr":
        await async_counter().incr(INCR_KEY)
    elif workload == "burn":
        raise RuntimeError("CPU burns run in a process pool, not on the event loop")
    await arecord(sent, started)
