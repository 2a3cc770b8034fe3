"""The thread executor: blocking code in a bounded pool of daemon threads.

Python cannot interrupt a thread, so cancel and timeout are cooperative: the job's context is
marked cancelled (``offload.current().cancelled`` turns true, ``check_cancelled()`` raises and
``run_process_sync`` kills its command), the job is recorded as cancelled or timed out at once,
and the thread finishes in the background with its result discarded. Until it returns it still
counts against the worker's slots (``detached``), so the number of threads stays bounded.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from offload.core.task import TaskSpec
from offload.errors import JobTimeout
from offload.worker.context import JobContext, bind

_Work = tuple[Callable[[], Any], "Future[Any]"]


class ThreadExecutor:
    def __init__(self, size: int) -> None:
        self.size = size
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._detached = 0
        self._lingering: dict[str, Future[Any]] = {}  # job id -> its detached thread's work

    @property
    def detached(self) -> int:
        """Threads still running jobs that were already recorded as cancelled or timed out."""
        with self._lock:
            return self._detached

    def lingering(self, job_id: str) -> Future[Any] | None:
        """The work of ``job_id``'s detached thread while it still runs (its slot stays taken
        until it returns: see ``Slots.free``), else None."""
        with self._lock:
            return self._lingering.get(job_id)

    async def start(self) -> None:
        for i in range(self.size):
            thread = threading.Thread(target=self._serve, name=f"offload-job-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    async def close(self, grace: float | None = None) -> None:
        for _ in self._threads:
            self._work.put(None)
        self._threads.clear()  # daemon threads: a stuck one does not hold up process exit

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    async def run(
        self,
        spec: TaskSpec,
        ctx: JobContext,
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        call_args, call_kwargs = spec.decode_arguments(args, kwargs)
        context = contextvars.copy_context()
        context.run(bind, ctx)
        fut: Future[Any] = Future()
        self._work.put((lambda: context.run(spec.func, *call_args, **call_kwargs), fut))
        waiter = asyncio.wrap_future(fut)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            if fut.done():
                raise
            _consume(waiter)
            self._detach(ctx, fut)
            raise JobTimeout(
                f"task {spec.name} ran longer than its {timeout:g}s timeout; its thread was asked "
                "to stop and its result will be discarded"
            ) from None
        except asyncio.CancelledError:
            _consume(waiter)
            self._detach(ctx, fut)
            raise

    def _detach(self, ctx: JobContext, fut: Future[Any]) -> None:
        ctx.request_cancel()
        if fut.cancel():  # never started: nothing to wait for
            return
        with self._lock:
            self._detached += 1
            self._lingering[ctx.id] = fut
        fut.add_done_callback(partial(self._reattach, ctx.id))

    def _reattach(self, job_id: str, fut: Future[Any]) -> None:
        with self._lock:
            self._detached -= 1
            if self._lingering.get(job_id) is fut:
                del self._lingering[job_id]


def _consume(waiter: asyncio.Future[Any]) -> None:
    """Mark a detached thread's eventual exception as seen (its result is discarded)."""
    waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
