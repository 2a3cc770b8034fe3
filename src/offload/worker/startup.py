"""A worker's start-up: opening the backend, the warden, the first heartbeat, the executors.

Opening the backend at start: a worker waits for a backend that is down, it does not die.

A worker that starts before its Redis (a container started first, a restart of both) retries
with backoff, logging each attempt, until the backend answers or the worker is told to stop.
A wrong setting (a bad URL, an unopenable file) is not an outage and fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from offload.backends import Backend
from offload.core.job import WorkerInfo
from offload.errors import BackendError, BackendUnavailable, ConfigurationError
from offload.worker.executors.base import Executor
from offload.worker.lease import LeaseKeeper
from offload.worker.sweep import GroupRecord, record_dir, sweep
from offload.worker.warden import Warden

log = logging.getLogger("offload.worker")

FIRST_PAUSE = 0.5
MAX_PAUSE = 10.0


async def open_when_up(backend: Backend, stopping: asyncio.Event) -> bool:
    """Open ``backend``, retrying while it is unavailable; False if ``stopping`` came first."""
    pause = FIRST_PAUSE
    while not stopping.is_set():
        try:
            await backend.open()
            return True
        except BackendUnavailable as exc:
            log.warning("backend unavailable at start (%s); retrying in %.1fs", exc, pause)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), pause)
        pause = min(pause * 2, MAX_PAUSE)
    return False


def start_warden(warden: Warden) -> None:
    """Kill what a dead worker on this machine left running, then watch our own commands."""
    folder = record_dir()
    record = None
    if folder is not None:
        try:
            sweep(folder)
            record = GroupRecord(folder)
        except OSError as exc:
            log.warning("command groups are not recorded (%s): %s", folder, exc)
    warden.start(record)


async def first_heartbeat(
    backend: Backend, info: WorkerInfo, keeper: LeaseKeeper, ttl: float
) -> None:
    """Be on the list of live workers before claiming: a claimed job's worker must be alive
    there, or other workers would take it for a dead one's."""
    sent_at = time.monotonic()
    try:
        await backend.heartbeat(info, ttl=ttl)
    except BackendError as exc:
        log.warning("worker heartbeat failed: %s; no claims until one succeeds", exc)
        return
    keeper.alive_since(sent_at)


def loop_executor(size: int) -> ThreadPoolExecutor:
    """The loop's default executor: ``asyncio.to_thread`` in async tasks gets ``size`` threads
    (``loop_threads``, or one per slot), not asyncio's default of the CPU count + 4 (6 on 2
    cores)."""
    return ThreadPoolExecutor(size, thread_name_prefix="offload-to-thread")


def process_executor(app_path: str | None, concurrency: int, setup: str | None) -> Executor:
    """The process pool for tasks with ``executor="process"``: as many children as slots, at
    most one per CPU."""
    from offload.worker.executors.process import ProcessExecutor

    if app_path is None:
        raise ConfigurationError(
            "tasks with executor='process' need the app's import path: run the worker as "
            "'offload worker module:app' or pass Worker(app, app_path='module:app')"
        )
    size = min(concurrency, os.cpu_count() or 1)
    return ProcessExecutor(app_path, size, setup=setup)
