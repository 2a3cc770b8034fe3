"""The scheduler: submits the tick jobs of periodic tasks, from the backend's clock.

Every worker that serves a schedule's queue runs one. At each tick they all submit the same
job under the same idempotency key (``periodic:<name>:<tick>``), so the backend stores it once:
each tick fires exactly once however many workers and machines run, with no leader to elect.
A scheduler only moves forward: it never submits a tick at or before one it already handled.

On start, the schedule's ``missed`` policy decides about ticks that passed while no worker ran:
"skip" waits for the next tick; "once" submits the latest passed tick if it is newer than the
newest tick job the backend holds (a schedule that never fired has nothing to catch up).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from offload.backends import Backend
from offload.client import App, SubmitOptions
from offload.core.job import JobFilter
from offload.core.schedule import Schedule, iso_utc, tick_of
from offload.errors import BackendError, IdempotencyConflict

log = logging.getLogger("offload.scheduler")

#: Longest sleep between two looks at the backend's clock (local and backend clocks drift).
MAX_SLEEP = 30.0
#: How far back the newest tick job is searched for, in pages of 100 jobs of the task.
HISTORY_PAGES = 10


class Scheduler:
    """Fires the ticks of ``schedules`` as jobs of ``app`` stored through ``backend``."""

    def __init__(self, app: App, backend: Backend, schedules: Sequence[Schedule]) -> None:
        self.app = app
        self.backend = backend
        self.schedules = list(schedules)
        self.fired = 0  # tick jobs this scheduler stored
        self.duplicates = 0  # ticks another worker had stored first
        self._after: dict[str, float] = {}  # per schedule: ticks up to here are handled

    async def run(self) -> None:
        """Fire ticks until cancelled; errors are logged and retried with backoff."""
        listing = ", ".join(f"{s.name} ({s.trigger.describe()})" for s in self.schedules)
        log.info("firing the ticks of %s", listing)
        pause = 0.05
        while True:
            try:
                sleep = await self.step()
                pause = 0.05
            except BackendError as exc:
                log.warning("scheduler: %s; retrying in %.2fs", exc, pause)
                sleep, pause = pause, min(pause * 2, 5.0)
            except Exception:  # a bug must not silently end the schedules of this worker
                log.exception("scheduler: internal error; retrying in %.2fs", pause)
                sleep, pause = pause, min(pause * 2, 5.0)
            await asyncio.sleep(sleep)

    async def step(self) -> float:
        """Fire every tick that is due now; return the seconds until the next one."""
        now = await self.backend.now()
        for schedule in self.schedules:
            if schedule.name not in self._after:
                self._after[schedule.name] = await self._start_point(schedule, now)
            tick = schedule.latest_tick(now)
            if tick is not None and tick > self._after[schedule.name]:
                await self._fire(schedule, tick)
                self._after[schedule.name] = tick
        upcoming = min(s.next_tick(now) for s in self.schedules)
        return min(max(upcoming - now, 0.001), MAX_SLEEP)

    async def _start_point(self, schedule: Schedule, now: float) -> float:
        """Ticks at or before the returned time are not fired by this scheduler."""
        if schedule.missed == "skip":
            return now
        last = await self._last_fired(schedule)
        latest = schedule.latest_tick(now)
        if last is None or latest is None or latest <= last:
            return now
        log.info(
            "periodic %s: catching up once for the tick of %s (last fired: %s)",
            schedule.name,
            iso_utc(latest),
            iso_utc(last),
        )
        return last

    async def _last_fired(self, schedule: Schedule) -> int | None:
        """The newest tick the backend holds a job for, from the newest page that has one."""
        flt = JobFilter(task=schedule.task, limit=100)
        for _ in range(HISTORY_PAGES):
            page = await self.backend.list_jobs(flt)
            ticks = [tick_of(record.meta, schedule.name) for record in page.jobs]
            if found := [tick for tick in ticks if tick is not None]:
                return max(found)
            if page.next_cursor is None:
                return None
            flt = JobFilter(task=schedule.task, limit=100, cursor=page.next_cursor)
        return None

    async def _fire(self, schedule: Schedule, tick: int) -> None:
        options = SubmitOptions(
            idempotency_key=schedule.idempotency_key(tick), meta=schedule.tick_meta(tick)
        )
        new = self.app.prepare(schedule.task, (), {}, options)
        try:
            [record] = await self.backend.submit([new])
        except IdempotencyConflict as exc:  # another deployment's task differs (its queue?)
            log.warning("periodic %s: tick %s: %s", schedule.name, iso_utc(tick), exc)
            return
        if record.id == new.id:
            self.fired += 1
            log.debug(
                "periodic %s: tick %s fired as job %s", schedule.name, iso_utc(tick), record.id
            )
        else:
            self.duplicates += 1
