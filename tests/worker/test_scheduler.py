"""Periodic tasks fired by workers: once per tick across workers, restarts, missed ticks.

The first tests drive one Scheduler on a manual clock (deterministic); the rest run real workers
on every backend and count the tick jobs the backend holds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

import offload
from offload.backends.memory import MemoryBackend
from offload.core.clock import ManualClock
from offload.core.schedule import MissedPolicy, tick_of
from offload.settings import Settings
from offload.worker.scheduler import Scheduler
from pgkit import postgres_schema_url
from rediskit import redis_namespace_url

EVERY_SECOND = timedelta(seconds=1)
START = 1_699_999_980.0  # a whole minute


# -- one scheduler on a manual clock -----------------------------------------------------------
@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START + 0.5)


@pytest.fixture
def manual_app(clock: ManualClock) -> offload.App:
    return offload.App(MemoryBackend(clock=clock))


async def ticks_of(app: offload.App, name: str = "tick") -> list[int]:
    """The tick of every tick job the backend holds for ``name``, oldest job first."""
    jobs = await app.ajobs(task=name, limit=10_000)
    return [t for j in reversed(jobs) if (t := tick_of(j.record.meta, name)) is not None]


def scheduler_for(app: offload.App) -> Scheduler:
    return Scheduler(app, app.new_backend(), list(app.schedules.values()))


async def test_a_scheduler_fires_each_tick_once_and_sleeps_until_the_next(
    manual_app: offload.App, clock: ManualClock
) -> None:
    manual_app.periodic(every=timedelta(seconds=10), name="tick")(lambda: None)
    scheduler = scheduler_for(manual_app)
    assert await scheduler.step() == pytest.approx(9.5)  # "skip": the tick at START is past
    assert await ticks_of(manual_app) == []
    clock.advance(9.5)
    assert await scheduler.step() == pytest.approx(10.0)
    assert await scheduler.step() == pytest.approx(10.0)  # the same instant: nothing new
    clock.advance(35)  # late by three ticks (a blocked loop): only the latest one fires
    await scheduler.step()
    assert await ticks_of(manual_app) == [int(START) + 10, int(START) + 40]
    [job] = await manual_app.ajobs(task="tick", limit=1)
    assert job.record.meta == {"periodic": "tick", "tick": "2023-11-14T22:13:40+00:00"}
    assert job.record.idempotency_key == f"periodic:tick:{int(START) + 40}"
    assert (scheduler.fired, scheduler.duplicates) == (2, 0)


async def test_schedulers_of_two_workers_store_one_job_per_tick(
    manual_app: offload.App, clock: ManualClock
) -> None:
    manual_app.periodic("* * * * *", name="tick")(lambda: None)
    first, second = scheduler_for(manual_app), scheduler_for(manual_app)
    await first.step()
    await second.step()
    for _ in range(3):
        clock.advance(60)
        await first.step()
        await second.step()
    assert await ticks_of(manual_app) == [int(START) + 60 * n for n in (1, 2, 3)]
    assert (first.fired, first.duplicates, second.fired, second.duplicates) == (3, 0, 0, 3)


@pytest.mark.parametrize(("missed", "expected"), [("skip", []), ("once", [int(START) + 50])])
async def test_missed_policy_on_start(
    manual_app: offload.App, clock: ManualClock, missed: MissedPolicy, expected: list[int]
) -> None:
    manual_app.periodic(every=timedelta(seconds=10), name="tick", missed=missed)(lambda: None)
    before = scheduler_for(manual_app)
    await before.step()
    clock.advance(9.5)
    await before.step()
    assert await ticks_of(manual_app) == [int(START) + 10]
    clock.advance(45)  # no worker ran through the ticks of +20 .. +50
    after = scheduler_for(manual_app)
    await after.step()
    assert await ticks_of(manual_app) == [int(START) + 10, *expected]
    await after.step()  # a second look fires nothing more
    assert await ticks_of(manual_app) == [int(START) + 10, *expected]


async def test_once_has_nothing_to_catch_up_for_a_schedule_that_never_fired(
    manual_app: offload.App,
) -> None:
    manual_app.periodic(every=timedelta(seconds=10), name="tick", missed="once")(lambda: None)
    manual_app.periodic(every=timedelta(seconds=10), name="other")(lambda: None)
    await manual_app.asubmit_name("tick")  # a job submitted by hand is not a tick
    await scheduler_for(manual_app).step()
    assert await ticks_of(manual_app) == []


def test_only_workers_that_serve_a_schedules_queue_run_a_scheduler(
    manual_app: offload.App,
) -> None:
    assert offload.Worker(manual_app).scheduler is None  # no schedules at all
    manual_app.periodic(every=EVERY_SECOND, name="tick", queue="cron")(lambda: None)
    assert offload.Worker(manual_app, queues={"default": None}).scheduler is None
    worker = offload.Worker(manual_app)
    assert worker.scheduler is not None
    assert [s.name for s in worker.scheduler.schedules] == ["tick"]


# -- real workers on every backend -------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, fast_settings: Settings
) -> AsyncIterator[offload.App]:
    url = {
        "memory": lambda: "memory://",
        "sqlite": lambda: f"sqlite:///{tmp_path}/jobs.db",
        "redis": redis_namespace_url,
        "postgres": postgres_schema_url,
    }[request.param]()
    app = offload.App(url, settings=fast_settings)
    yield app
    await app.aclose()


@asynccontextmanager
async def running(app: offload.App, count: int = 1) -> AsyncIterator[list[offload.Worker]]:
    """``count`` workers on ``app``'s backend, each with its own connections, in this loop."""
    workers = [offload.Worker(app, name=f"w{i}") for i in range(count)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)


async def wait_for(check: Callable[[], Awaitable[object]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def declare_tick(app: offload.App, missed: MissedPolicy = "skip") -> list[float]:
    """A task ticking every second that records when it ran."""
    ran: list[float] = []

    @app.periodic(every=EVERY_SECOND, name="tick", missed=missed)
    async def tick() -> None:
        ran.append(time.time())

    return ran


async def test_three_workers_fire_a_one_second_tick_five_times_in_five_seconds(
    app: offload.App,
) -> None:
    ran = declare_tick(app)
    async with running(app, 3) as workers:
        await asyncio.sleep(5.0)
    ticks = await ticks_of(app)
    assert 4 <= len(ticks) <= 6, ticks
    assert len(set(ticks)) == len(ticks), Counter(ticks)  # no tick time twice
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # none skipped either
    schedulers = [w.scheduler for w in workers if w.scheduler is not None]
    assert sum(s.fired for s in schedulers) == len(ticks)  # each stored by exactly one worker
    assert len(ran) >= len(ticks) - 1  # the last may come as the workers stop


@pytest.mark.parametrize("missed", ["skip", "once"])
async def test_a_restarted_worker_does_not_fire_a_tick_again(
    app: offload.App, missed: MissedPolicy
) -> None:
    declare_tick(app, missed)
    async with running(app):
        await wait_for(lambda: ticks_of(app))
    last = max(await ticks_of(app))
    async with running(app) as [worker]:  # at once: usually within the same second
        await wait_for(lambda: _has_tick_after(app, last))
    ticks = await ticks_of(app)
    assert len(set(ticks)) == len(ticks), Counter(ticks)
    assert worker.scheduler is not None
    assert worker.scheduler.duplicates == 0  # it never even submitted a fired tick again
    assert worker.scheduler.fired == len([t for t in ticks if t > last])


async def _has_tick_after(app: offload.App, tick: int) -> bool:
    return any(t > tick for t in await ticks_of(app))


@pytest.mark.parametrize("missed", ["skip", "once"])
async def test_ticks_missed_while_no_worker_ran(app: offload.App, missed: MissedPolicy) -> None:
    declare_tick(app, missed)
    async with running(app):
        await wait_for(lambda: ticks_of(app))
    last = max(await ticks_of(app))
    # Restart early in a second, at least three ticks later, so that the new worker starts
    # well before the next tick and the latest missed tick is known.
    now = await app.anow()
    restart = max(last + 3, math.floor(now) + 1) + 0.1
    await asyncio.sleep(restart - now)
    missed_ticks = range(last + 1, math.floor(restart) + 1)
    async with running(app):
        await wait_for(lambda: _has_tick_after(app, missed_ticks[-1]))
    ticks = await ticks_of(app)
    caught_up = [t for t in ticks if t in missed_ticks]
    assert caught_up == ([missed_ticks[-1]] if missed == "once" else []), (ticks, last)
    assert len(set(ticks)) == len(ticks), Counter(ticks)
