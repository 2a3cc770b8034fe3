"""Group commit: concurrent calls of one process share one transaction.

A :class:`Group` gathers the items that callers hand it while earlier transactions are in
flight and writes them together, so 100 concurrent submitters cost a handful of commits (and
WAL flushes) instead of 100. A caller alone is never delayed: with a free flush slot its item
is written at once, by itself (by a group that gathers, one event-loop turn later); there is
no timer.

Each caller gets its own outcome. A flush that fails with an error that says nothing about
the server (bad input, an idempotency conflict, a constraint; its transaction rolled back, so
nothing was stored) is run again item by item, each in a transaction of its own, so one bad
item fails only its own caller. An error that leaves the outcome unknown (the connection lost
mid-commit: :class:`~offload.errors.BackendUnavailable`) goes to every caller of the batch, as
it would have to each of them alone. A caller hears of success only once the flush's
transaction has committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from offload.errors import BackendUnavailable

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")  # its result


class Group(Generic[I, R]):
    """Calls ``many`` with the items gathered while up to ``flushes`` calls are in flight.

    ``many(items)`` writes them in one transaction and returns one outcome per item (an
    exception for an item refused on its own, e.g. a lost lease); it raises when the whole
    transaction failed. ``one(item)`` writes one item alone (the fallback when ``many``
    raised for a reason other than the server being unavailable). ``weight`` says how much
    of ``limit`` an item takes (e.g. its number of jobs). ``gather``: flushes start one loop
    turn after an item is handed in, so the items handed in during that turn share one (a
    worker's jobs that end together: a claim of 20 no-ops ended in a lone flush, a second
    lone one, then one of 18; now one flush of 20). ``after()`` runs once a flush
    stored anything (e.g. the wake-up after a submit): a lone item's caller is answered
    after it, as without a group (measured: overlapping it with that caller's next call
    slowed a sequential submitter); a group's callers first, then :meth:`drain` waits for it.
    """

    def __init__(
        self,
        many: Callable[[list[I]], Awaitable[Sequence[R | BaseException]]],
        one: Callable[[I], Awaitable[R]],
        *,
        flushes: int = 1,
        limit: int = 500,
        weight: Callable[[I], int] = lambda item: 1,
        after: Callable[[], Awaitable[None]] | None = None,
        gather: bool = False,
    ) -> None:
        if flushes < 1 or limit < 1:
            raise ValueError("a group needs at least one flush and a limit of at least 1")
        self._many = many
        self._one = one
        self._flushes = flushes
        self._limit = limit
        self._weight = weight
        self._after = after
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._busy = 0  # flushes in flight
        self._tasks: set[asyncio.Task[None]] = set()  # flushes and their ``after``
        self._gather = gather
        self._soon: asyncio.Handle | None = None  # a start put off to the next loop turn

    async def __call__(self, item: I) -> R:
        """Write ``item`` (with whatever else is waiting) and return its result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._gather:
            self._start()
        elif self._soon is None:  # every item handed in during this loop turn goes together
            self._soon = asyncio.get_running_loop().call_soon(self._start_soon)
        return await future  # cancelled while it waits: it is left out of the next flush

    async def drain(self) -> None:
        """Wait for every flush in flight (and what waits behind them) to end."""
        while self._tasks or self._soon is not None:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                await asyncio.sleep(0)  # the start put off to the next loop turn

    def _start_soon(self) -> None:
        self._soon = None
        self._start()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending and self._busy < self._flushes:
            batch = self._take()
            if not batch:
                return
            self._busy += 1
            task = loop.create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[I, asyncio.Future[R]]]:
        self._pending = [(item, future) for item, future in self._pending if not future.done()]
        size = taken = 0
        for item, _ in self._pending:
            weight = self._weight(item)
            if taken and size + weight > self._limit:
                break
            size += weight
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        return batch

    async def _flush(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        stored = False
        try:
            outcomes = await self._outcomes([item for item, _ in batch])
            stored = not all(isinstance(o, BaseException) for o in outcomes)
            try:
                if stored and self._after is not None and len(batch) == 1:
                    stored = False  # alone: as without a group, ``after`` before the answer
                    await self._after()
            finally:  # what ``after`` does changes no outcome
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    _settle(future, outcome)
        except asyncio.CancelledError:  # the loop is closing: no caller may wait forever
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # a bug in ``many``: every caller of the batch hears of it
            for _, future in batch:
                _settle(future, exc)
        finally:
            self._busy -= 1  # the next group need not wait for this one's ``after``
            if self._pending:
                self._start()
        if stored and self._after is not None:
            await self._after()  # the callers have their answers already

    async def _outcomes(self, items: list[I]) -> Sequence[R | BaseException]:
        if len(items) == 1:
            return [await _outcome(self._one(items[0]))]
        try:
            return await self._many(items)
        except BackendUnavailable as exc:  # committed or not: unknown, as for a lone caller
            return [exc] * len(items)
        except Exception:  # rolled back: nothing stored; each item alone, in order
            return [await _outcome(self._one(item)) for item in items]


async def _outcome(call: Awaitable[R]) -> R | BaseException:
    try:
        return await call
    except Exception as exc:
        return exc


def _settle(future: asyncio.Future[R], outcome: R | BaseException) -> None:
    if future.done():  # its caller went away
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
