"""``lifespan``: the App's backend opened and closed with the application, and the embedded
worker that can run beside the web requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from offload.client import App
from offload.console import parse_queues
from offload.errors import BackendUnavailable
from offload.integrations.fastapi.deps import register

if TYPE_CHECKING:  # imported when a worker starts: a web process without one never loads it
    from offload.worker.worker import Worker

log = logging.getLogger("offload.integrations.fastapi")

Queues = str | Mapping[str, int | None] | Iterable[str]


def lifespan(
    app: App,
    *,
    worker: bool = False,
    concurrency: int | None = None,
    queues: Queues | None = None,
    shutdown_grace: float | None = None,
    app_path: str | None = None,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that opens ``app``'s backend at startup and
    closes it at shutdown. Compose it with your own::

        @asynccontextmanager
        async def my_lifespan(api: FastAPI):
            async with offload_fastapi.lifespan(jobs, worker=True)(api):
                yield

    With ``worker=True`` a :class:`~offload.worker.worker.Worker` runs inside the web process,
    on its event loop, with ``concurrency`` slots (default ``OFFLOAD_CONCURRENCY``) serving
    ``queues`` (``"pdf:2,default"``, a mapping of caps, or names; default: every queue of the
    app's tasks). At shutdown it claims nothing more, gives running jobs ``shutdown_grace``
    seconds (default ``OFFLOAD_SHUTDOWN_GRACE``, 25) and releases the rest to the queue,
    their attempt not charged: nothing is lost. Keep blocking code in ``def`` tasks (thread
    executor): an ``async def`` task that blocks would block the web requests too. Tasks
    with ``executor="process"`` need ``app_path`` (``"module:attribute"``).
    """
    caps = parse_queues(queues) if isinstance(queues, str) else queues

    @asynccontextmanager
    async def run(api: Starlette) -> AsyncIterator[None]:
        register(api, app)
        try:
            await app.backend()
        except BackendUnavailable as exc:  # serve (503s from the job routes) until it is back
            log.warning("offload backend unavailable at startup: %s", exc)
        embedded = (
            _start_worker(app, concurrency, caps, shutdown_grace, app_path) if worker else None
        )
        try:
            yield
        finally:
            if embedded is not None:
                await _stop_worker(*embedded)
            await app.aclose()

    return run


def _start_worker(
    app: App,
    concurrency: int | None,
    queues: Mapping[str, int | None] | Iterable[str] | None,
    shutdown_grace: float | None,
    app_path: str | None,
) -> tuple[Worker, asyncio.Task[None]]:
    from offload.worker.worker import Worker

    settings = app.settings
    if shutdown_grace is not None:
        settings = settings.with_(shutdown_grace=shutdown_grace)
    if queues is not None and not isinstance(queues, Mapping):
        queues = dict.fromkeys(queues)
    worker = Worker(
        app,
        queues=queues,
        concurrency=concurrency,
        name="embedded",
        app_path=app_path,
        settings=settings,
    )
    task = asyncio.create_task(worker.run(), name="offload-embedded-worker")
    task.add_done_callback(_report_worker_end)
    return worker, task


def _report_worker_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the embedded offload worker stopped", exc_info=task.exception())


async def _stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    """Stop claiming, let running jobs finish within the grace, release the rest."""
    worker.stop()
    await asyncio.gather(task, return_exceptions=True)  # its failure was logged when it ended
