"""Group commit for network backends: concurrent calls share one round trip.

While one batch is on its way to the server, new calls queue up; when it returns they all go
together in the next one. A lone caller waits for nothing extra, and a busy process sends one
request per round trip instead of one per call. Each call's item must be independent of the
others in its batch (the flush function reports a result or an exception per item).

A call that finds nothing on its way sends its own batch of one from its own task: no future,
no drain task, two loop turns fewer (what an endpoint submitting one job at a time pays for).
Calls arriving meanwhile queue up as usual and go together once it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item of a batch
R = TypeVar("R")

Flush = Callable[[Sequence[I]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[I, R]):
    """Calls ``flush`` with the items of concurrent callers, at most ``max_items`` at a time.

    One instance per event loop (the futures belong to the loop that made them).
    """

    def __init__(self, flush: Flush[I, R], *, max_items: int = 1000) -> None:
        self._flush = flush
        self._max_items = max_items
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._sending: list[asyncio.Future[R]] = []  # the callers of the batch on its way
        self._draining: asyncio.Task[None] | None = None
        self._alone: asyncio.Task[Any] | None = None  # the task sending a batch of one itself
        self._stopped: tuple[asyncio.Task[Any], Callable[[], BaseException]] | None = None

    async def __call__(self, item: I) -> R:
        if self._draining is None and self._alone is None:
            return await self._send_alone(item)
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._draining is None and self._alone is None:
            self._draining = asyncio.create_task(self._drain())
        return await fut

    async def _send_alone(self, item: I) -> R:
        """The lone caller's round trip, from its own task; then whatever queued meanwhile."""
        self._alone = task = asyncio.current_task()
        try:
            [result] = await self._flush([item])
        except asyncio.CancelledError:
            stopped, self._stopped = self._stopped, None
            if stopped is not None and stopped[0] is task and task.uncancel() == 0:
                raise stopped[1]() from None  # close() stopped it, not the caller
            raise
        finally:
            self._alone = None
            if self._pending and self._draining is None:
                self._draining = asyncio.create_task(self._drain())
        if isinstance(result, BaseException):
            raise result
        return result

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_items]
                del self._pending[: self._max_items]
                self._sending = [fut for _, fut in batch]
                try:
                    results = await self._flush([item for item, _ in batch])
                except BaseException as exc:  # the whole round trip failed: every caller hears
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if fut.done():  # the caller gave up waiting
                        continue
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        finally:
            self._draining = None
            self._sending = []
            for _, fut in self._pending:  # only after a cancellation: nobody will send these
                if not fut.done():
                    fut.set_exception(asyncio.CancelledError())
            if self._pending:
                self._pending.clear()

    async def close(self, error: Callable[[], BaseException]) -> None:
        """Answer every caller still waiting, queued or on its way, with ``error()``, and stop
        the batch on its way (its reply may never come once the connections are closed)."""
        alone = self._alone
        if alone is not None:
            self._stopped = (alone, error)
            alone.cancel()
        for fut in [*self._sending, *(fut for _, fut in self._pending)]:
            if not fut.done():
                fut.set_exception(error())
        self._pending.clear()
        draining = self._draining
        if draining is not None:
            draining.cancel()
            await asyncio.gather(draining, return_exceptions=True)
        if alone is not None:  # stopped before the connections close, as the drain task is
            await asyncio.wait([alone])
