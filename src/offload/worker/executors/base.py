"""The one shape every executor has."""

from __future__ import annotations

from typing import Any, Protocol

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
