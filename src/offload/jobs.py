"""``Job``: a handle on one submitted job; sync and async methods share one implementation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from offload.core.job import JobRecord, Transition
from offload.core.states import State
from offload.errors import JobCancelled, JobFailed, WaitTimeout

if TYPE_CHECKING:
    from offload.backends.base import Backend

POLL_START = 0.005
POLL_MAX = 0.25
T = TypeVar("T")


class JobApp(Protocol):
    """What a ``Job`` needs of its ``offload.App`` (a protocol, so this module does not import
    ``offload.client``, which imports it)."""

    async def backend(self) -> Backend: ...
    async def aget_record(self, job_id: str) -> JobRecord: ...
    async def acancel(self, job_id: str) -> Job: ...
    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T: ...


class Job:
    """A snapshot of a job plus the means to refresh it, wait for it, or cancel it.

    Attributes read from the snapshot (``status``, ``progress`` ...) change only on ``refresh``.
    """

    def __init__(self, app: JobApp, record: JobRecord) -> None:
        self._app = app
        self.record = record

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.record.task} {self.status}>"

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> State:
        return self.record.status

    @property
    def progress(self) -> float | None:
        return self.record.progress

    @property
    def error(self) -> dict[str, Any] | None:
        return self.record.error

    @property
    def attempts(self) -> int:
        return self.record.attempts

    async def arefresh(self) -> Job:
        self.record = await self._app.aget_record(self.id)
        return self

    def refresh(self) -> Job:
        """Re-read the job from the backend."""
        return self._app.run_sync(self.arefresh())

    async def aresult(self, timeout: float | None = None) -> Any:
        """Wait for the job to end and return its result.

        :raises JobFailed: the job failed (``.error`` holds the recorded error).
        :raises JobCancelled: the job was cancelled.
        :raises WaitTimeout: it did not end within ``timeout`` seconds (it keeps running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = POLL_START
        while not self.record.is_terminal:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {self.id} is still {self.status} after {timeout:g}s")
            wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(wait)
            pause = min(POLL_MAX, pause * 1.5)
            await self.arefresh()
        return self._outcome()

    def result(self, timeout: float | None = None) -> Any:
        """Synchronous ``aresult``."""
        return self._app.run_sync(self.aresult(timeout))

    def _outcome(self) -> Any:
        rec = self.record
        if rec.status is State.SUCCEEDED:
            return rec.result
        error = rec.error or {}
        message = f"{error.get('type', 'Error')}: {error.get('message', '')}"
        if rec.status is State.CANCELLED:
            raise JobCancelled(self.id, f"job {self.id} was cancelled", error)
        raise JobFailed(self.id, f"job {self.id} failed: {message}", error)

    async def acancel(self) -> Job:
        self.record = (await self._app.acancel(self.id)).record
        return self

    def cancel(self) -> Job:
        """Cancel the job: at once if it waits; a running job is asked to stop."""
        return self._app.run_sync(self.acancel())

    async def ahistory(self) -> list[Transition]:
        return await (await self._app.backend()).history(self.id)

    def history(self) -> list[Transition]:
        """The job's recorded transitions, oldest first."""
        return self._app.run_sync(self.ahistory())
