"""The one shape every executor has, and the error a task run elsewhere raises."""

from __future__ import annotations

from typing import Any, Protocol

from offload import errors
from offload.core.task import TaskSpec
from offload.worker.context import JobContext


class Executor(Protocol):
    """Runs one job's function somewhere and returns its (not yet encoded) result.

    ``run`` raises JobTimeout when ``timeout`` passes, Cancelled or CancelledError when the job
    was stopped, and whatever the task raised otherwise.
    """

    async def start(self) -> None: ...

    async def close(self, grace: float | None = None) -> None: ...

    async def run(
        self,
        spec: TaskSpec,
        ctx: JobContext,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any: ...


class ChildError(errors.OffloadError):
    """A task failed in a child process; ``.info`` is its ``{"type", "message", "traceback"}``.

    ``info["type"]`` is the task's exception class name, or ``"ChildDied"`` when the child
    process exited in the middle of a job (``os._exit``, a segfault, the OOM killer...).
    """

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        super().__init__(f"{info['type']}: {info['message']}")
