"""Opening the backend at start: a worker waits for a backend that is down, it does not die.

A worker that starts before its Redis (a container started first, a restart of both) retries
with backoff, logging each attempt, until the backend answers or the worker is told to stop.
A wrong setting (a bad URL, an unopenable file) is not an outage and fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from offload.backends import Backend
from offload.errors import BackendUnavailable

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
