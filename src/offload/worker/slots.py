"""A worker's slots: how many of its jobs run at once, from which queues, how far ahead it claims.

The worker asks :meth:`Slots.room` what to claim, gives each claimed job a :class:`Seat`
(:meth:`Slots.seat`) and frees it once the job's code is done (:meth:`Slots.done`,
:meth:`Slots.free`); the runner only waits on the seat (:meth:`Seat.take`) before running the
job's code. Everything counted here is touched from the event loop only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from offload.core.job import JobRecord

#: A worker claims ahead of its free slots only while its jobs take less than this on average.
SHORT_JOB = 0.05
#: By default (prefetch -1) a worker claims ahead as many jobs as its slots would start within
#: this many seconds at its jobs' recent run time: no fewer than its slots, and ...
AHEAD_WINDOW = 0.02
#: ... no more than this many times its slots.
AHEAD_TIMES = 8
#: A job that waited this many seconds for a slot (held ahead behind jobs that turned out slow)
#: goes back to its queue, its attempt refunded, for another worker to take.
HOLD_LIMIT = 1.0


@dataclass(eq=False)
class Seat:
    """One claimed job's place in the worker, from its claim until its code is done."""

    queue: str
    alone: bool  # a suspect (it was there when workers died): it runs with nothing beside it
    semaphore: asyncio.Semaphore  # the worker's slots, taken before the code runs
    gate: asyncio.Event | None = None  # a suspect waits here until it is the worker's only job
    executing: bool = True  # claimed and its code not done yet (waiting for a slot included)
    held: bool = False  # it holds one of the worker's slots
    began: float = 0.0  # time.monotonic() when it got its slot
    given_back: bool = False  # it waited HOLD_LIMIT for a slot: it goes back to its queue

    async def take(self) -> bool:
        """Wait for the gate (a suspect must not hold a slot while it waits), then a slot: True
        once it holds one, False if none freed within :data:`HOLD_LIMIT` (give the job back)."""
        if self.gate is not None:
            await self.gate.wait()
        if self.semaphore.locked():  # no slot free now: wait for one, for a while
            try:
                async with asyncio.timeout(HOLD_LIMIT):
                    await self.semaphore.acquire()
            except TimeoutError:
                self.given_back = True
                return False
        else:
            await self.semaphore.acquire()
        self.held = True
        self.began = time.monotonic()
        return True


class Slots:
    """``capacity`` slots shared by the jobs of ``caps`` (queue -> cap on its running jobs here,
    None: no cap beyond ``capacity``), claiming up to ``prefetch`` jobs ahead (-1: as many as
    :meth:`ahead` finds) while jobs are short; a job lost ``alone_after`` times runs alone."""

    def __init__(
        self, capacity: int, caps: Mapping[str, int | None], *, prefetch: int, alone_after: int
    ) -> None:
        self.capacity = capacity
        self.caps = caps
        self.prefetch = prefetch
        self.alone_after = alone_after
        self.executing = 0  # jobs claimed whose code has not ended (or not yet begun)
        self.per_queue: dict[str, int] = dict.fromkeys(caps, 0)
        self.job_seconds = float("inf")  # moving average of recent jobs' run time
        self.stalled = False  # a held job was given back: claim none ahead until a slot frees
        self._semaphore = asyncio.Semaphore(capacity)  # held while a job's code runs
        self._seats: list[Seat] = []  # the executing ones, in claim order

    def room(self, detached: int = 0) -> dict[str, int]:
        """How many jobs to claim now from each queue (none while a suspect runs alone);
        ``detached``: threads of timed-out jobs that still run and count as busy slots."""
        if any(seat.alone for seat in self._seats):
            return {}  # a suspect runs alone: take nothing else until it ends
        free = self.capacity + self.ahead() - self.executing - detached
        room: dict[str, int] = {}
        for queue, cap in self.caps.items():
            limit = free if cap is None else min(free, cap - self.per_queue[queue])
            if limit > 0:
                room[queue] = limit
        return room

    def ahead(self) -> int:
        """How many jobs to hold beyond the slots now: none until the recent jobs are known to be
        short; then ``prefetch``, or by default as many as the slots would start within
        :data:`AHEAD_WINDOW`: the slots' number for jobs of 20 ms and more, up to
        :data:`AHEAD_TIMES` times it for jobs of 2.5 ms and less. Each claim round trip then
        carries more jobs when jobs are quick, and a job held ahead still waits for its slot
        about as long as the window while jobs take what they took recently; one that waits
        :data:`HOLD_LIMIT` (behind jobs that turned out slow) is given back, and nothing is held
        ahead again until a slot frees (``stalled``)."""
        if self.job_seconds >= SHORT_JOB or self.stalled:
            return 0
        if self.prefetch >= 0:
            return self.prefetch
        times = AHEAD_WINDOW / max(self.job_seconds, 1e-9)
        return int(self.capacity * min(AHEAD_TIMES, max(1.0, times)))

    def alone(self, record: JobRecord) -> bool:
        """Whether ``record`` must run with nothing beside it (it was there when workers died)."""
        return record.losses >= self.alone_after

    def takes_suspects(self) -> bool:
        """Whether to claim suspects now (jobs whose worker died; the backend gives one per
        claim). When a first loss does not isolate a job, a busy worker takes them too."""
        return not self.executing or self.alone_after > 1

    def seat(self, record: JobRecord) -> Seat:
        """A place for a job just claimed: counted at once, its slot taken when it runs."""
        seat = Seat(record.queue, self.alone(record), self._semaphore)
        if seat.alone and self.executing:
            seat.gate = asyncio.Event()  # a suspect: run it once the others are done
        self._seats.append(seat)
        self.executing += 1
        self.per_queue[record.queue] = self.per_queue.get(record.queue, 0) + 1
        return seat

    def done(self, seat: Seat, lingering: Future[Any] | None = None) -> bool:
        """The job's code returned: count its run time in the average, then :meth:`free`."""
        if seat.held:
            ran = time.monotonic() - seat.began
            self.job_seconds = (
                ran if self.job_seconds == float("inf") else (0.9 * self.job_seconds + 0.1 * ran)
            )
            self.stalled = False
        return self.free(seat, lingering)

    def free(self, seat: Seat, lingering: Future[Any] | None = None) -> bool:
        """The job's code is done: its slot (and queue share) can take the next job. False if it
        was freed already. ``lingering``: the work of the job's thread, still running after the
        job was cancelled or timed out; its slot stays taken until that returns, so a job
        claimed ahead cannot start beside it."""
        if not seat.executing:
            return False
        seat.executing = False
        self.stalled = self.stalled or seat.given_back
        self._seats.remove(seat)
        self.executing -= 1
        if seat.held:
            seat.held = False
            if lingering is None:
                self._semaphore.release()
            else:
                loop = asyncio.get_running_loop()
                release = self._semaphore.release
                lingering.add_done_callback(lambda _: loop.call_soon_threadsafe(release))
        self.per_queue[seat.queue] -= 1
        if self.executing == 1:  # a waiting suspect may run once it is the only job left
            for other in self._seats:
                if other.gate is not None:
                    other.gate.set()
        return True
