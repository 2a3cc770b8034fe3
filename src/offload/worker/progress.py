"""Jobs' progress reports (``ctx.progress``) on their way to the backend.

A report may come from any thread (a thread task) or from the loop (an async task). Each job
has at most one write in flight; reports made meanwhile replace each other, so the backend
gets the latest one next and a chatty job never queues up writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from offload.backends import Backend
from offload.errors import BackendError, LeaseLost
from offload.worker.failure import clip
from offload.worker.runner import Running

log = logging.getLogger("offload.worker")

Report = tuple[float | None, str | None]


class ProgressWriter:
    """Writes the progress of the jobs in ``running`` (job id -> job) through ``backend``,
    messages clipped to ``max_chars``; nothing is written before :attr:`loop` is set."""

    def __init__(self, backend: Backend, running: Mapping[str, Running], max_chars: int) -> None:
        self.backend = backend
        self.running = running
        self.max_chars = max_chars
        self.loop: asyncio.AbstractEventLoop | None = None  # the worker's, once it started

    def report(self, job_id: str, fraction: float | None, message: str | None) -> None:
        """A job's new progress (called from any thread)."""
        if message is not None:
            message = clip(message, self.max_chars)
        loop = self.loop
        if loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:  # an async task: queue it now, before the job can finish
            self._queue(job_id, (fraction, message))
        else:
            loop.call_soon_threadsafe(self._queue, job_id, (fraction, message))

    def _queue(self, job_id: str, value: Report) -> None:
        job = self.running.get(job_id)
        if job is None:
            return
        job.pending_progress = value
        if job.progress_writer is None or job.progress_writer.done():
            job.progress_writer = asyncio.create_task(self._write(job))

    async def _write(self, job: Running) -> None:
        while job.pending_progress is not None:
            fraction, message = job.pending_progress
            job.pending_progress = None
            try:
                await self.backend.progress(job.lease, fraction, message)
            except (LeaseLost, BackendError) as exc:
                log.debug("job %s: progress not recorded: %s", job.record.id, exc)
                return
