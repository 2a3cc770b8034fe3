"""Claiming ahead: a worker with short jobs claims more than its free slots, never runs more
than its concurrency at once, and gives back what it claimed ahead as soon as it stops."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import offload
from offload.errors import ConfigurationError
from offload.settings import Settings
from offload.worker.slots import AHEAD_TIMES, AHEAD_WINDOW, HOLD_LIMIT, SHORT_JOB, Slots

State = offload.State


class Watch:
    """What the task bodies see: how many run at once, and how many jobs the worker holds
    whose code has not ended (running, or claimed ahead and waiting for a slot)."""

    def __init__(self) -> None:
        self.now = self.peak = self.held = 0
        self.worker: offload.Worker | None = None

    async def body(self, seconds: float) -> None:
        assert self.worker is not None
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.held = max(self.held, sum(j.executing for j in self.worker._running.values()))
        await asyncio.sleep(seconds)
        self.now -= 1


async def drain(
    app: offload.App,
    watch: Watch,
    jobs: int,
    seconds: float,
    sizes: list[int] | None = None,
    **options: object,
) -> None:
    """Run ``jobs`` jobs of ``seconds`` each on one worker (``sizes``: each claim's job count)."""

    @app.task(name="work")
    async def work(s: float) -> None:
        await watch.body(s)

    handles = [await work.asubmit(seconds) for _ in range(jobs)]
    worker = offload.Worker(app, **options)  # type: ignore[arg-type]
    watch.worker = worker
    if sizes is not None:
        claim = worker.backend.claim

        async def counting(*args: Any, **kwargs: Any) -> list[offload.JobRecord]:
            jobs = await claim(*args, **kwargs)
            sizes.append(len(jobs))
            return jobs

        worker.backend.claim = counting  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    try:
        for handle in handles:
            await handle.aresult(timeout=20)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def test_short_jobs_are_claimed_ahead_but_never_run_beyond_concurrency(
    app: offload.App,
) -> None:
    watch = Watch()
    await drain(app, watch, 40, 0.005, concurrency=2)
    assert watch.peak == 2
    assert watch.held > 2  # jobs waited in the worker for a slot


async def test_claims_of_short_jobs_carry_at_most_the_claim_batch(app: offload.App) -> None:
    sizes: list[int] = []
    settings = app.settings.with_(claim_batch=7)
    await drain(app, Watch(), 60, 0, sizes, concurrency=2, settings=settings)
    assert sum(sizes) == 60
    assert max(sizes) == 7  # short jobs: the worker held more than its 2 slots, 7 at a time


async def test_long_jobs_are_not_claimed_ahead(app: offload.App) -> None:
    watch = Watch()
    await drain(app, watch, 3, 0.08, concurrency=1)
    assert (watch.peak, watch.held) == (1, 1)


async def test_prefetch_zero_turns_claiming_ahead_off(app: offload.App) -> None:
    watch = Watch()
    await drain(app, watch, 30, 0.005, concurrency=2, settings=app.settings.with_(prefetch=0))
    assert (watch.peak, watch.held) == (2, 2)


async def test_jobs_claimed_ahead_are_released_at_once_when_the_worker_stops(
    app: offload.App,
) -> None:
    ran: list[str] = []

    @app.task
    async def short() -> None:
        await asyncio.sleep(0.001)

    @app.task
    async def endless(name: str) -> None:
        ran.append(name)
        await asyncio.sleep(60)

    worker = offload.Worker(app, concurrency=1, settings=app.settings.with_(shutdown_grace=0.3))
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(3):  # short jobs first: the worker learns that its jobs are short
            await (await short.asubmit()).aresult(timeout=5)
        first = await endless.asubmit("first")
        ahead = await endless.asubmit("ahead")
        for _ in range(500):
            await ahead.arefresh()
            if ahead.status is State.RUNNING and ran:
                break
            await asyncio.sleep(0.01)
        assert ahead.status is State.RUNNING  # claimed, waiting for the slot "first" holds
        await asyncio.sleep(0.1)
        assert ran == ["first"]
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    for handle in (first, ahead):
        await handle.arefresh()
        assert (handle.status, handle.attempts) == (State.QUEUED, 0)
        assert (await handle.ahistory())[-1].reason.value == "released"
    assert ran == ["first"]  # the job claimed ahead never started


async def test_jobs_held_ahead_behind_a_slow_job_go_back_for_another_worker(
    app: offload.App,
) -> None:
    ends: dict[str, float] = {}

    @app.task
    async def quick(name: str) -> None:
        ends[name] = time.monotonic()

    @app.task
    async def slow() -> None:
        await asyncio.sleep(HOLD_LIMIT + 4)
        ends["slow"] = time.monotonic()

    first = offload.Worker(app, concurrency=1)
    run_first = asyncio.create_task(first.run())
    second: offload.Worker | None = None
    run_second: asyncio.Task[None] | None = None
    try:
        for i in range(3):  # the worker learns that its jobs are quick
            await (await quick.asubmit(f"learn{i}")).aresult(timeout=5)
        stuck = await slow.asubmit()
        for _ in range(500):
            await stuck.arefresh()
            if stuck.status is State.RUNNING:
                break
            await asyncio.sleep(0.01)
        behind = [await quick.asubmit(f"behind{i}") for i in range(4)]
        for _ in range(500):  # the quick ones are held ahead, behind the slow one
            statuses = [(await h.arefresh()).status for h in behind]
            if all(s is State.RUNNING for s in statuses):
                break
            await asyncio.sleep(0.01)
        assert all(s is State.RUNNING for s in statuses)
        second = offload.Worker(app, concurrency=2)
        run_second = asyncio.create_task(second.run())
        for handle in behind:
            await handle.aresult(timeout=HOLD_LIMIT + 3.5)  # given back, run by the other one
        assert "slow" not in ends  # before the slow one ended
        for handle in behind:
            history = await handle.ahistory()
            assert [e.reason.value for e in history].count("released") == 1
            assert handle.attempts == 1  # the attempt given back was refunded
            assert history[-1].worker_id == second.id
        await stuck.aresult(timeout=10)
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        await asyncio.wait_for(asyncio.gather(run_first, *([run_second] if run_second else [])), 10)


@pytest.mark.parametrize("value", [-2, -10])
def test_a_negative_prefetch_other_than_minus_one_is_refused(value: int) -> None:
    with pytest.raises(ConfigurationError, match="prefetch"):
        Settings(prefetch=value)


def test_prefetch_defaults_to_sizing_by_run_time(app: offload.App) -> None:
    assert offload.Worker(app, concurrency=7).prefetch == -1
    assert offload.Worker(app, concurrency=7, settings=app.settings.with_(prefetch=3)).prefetch == 3


def slots_after(job_seconds: float, prefetch: int = -1, capacity: int = 10) -> Slots:
    slots = Slots(capacity, {"default": None}, prefetch=prefetch, alone_after=1)
    slots.job_seconds = job_seconds
    return slots


@pytest.mark.parametrize(
    ("job_seconds", "ahead"),
    [
        (float("inf"), 0),  # nothing known yet: only free slots are filled
        (SHORT_JOB, 0),  # long jobs are never claimed ahead
        (0.04, 10),  # at least as many as the slots
        (AHEAD_WINDOW, 10),
        (AHEAD_WINDOW / 4, 40),  # as many as the slots start within the window
        (AHEAD_WINDOW / AHEAD_TIMES, 10 * AHEAD_TIMES),
        (0.00001, 10 * AHEAD_TIMES),  # and no more than AHEAD_TIMES the slots
        (0.0, 10 * AHEAD_TIMES),
    ],
)
def test_by_default_jobs_held_ahead_follow_the_run_time(job_seconds: float, ahead: int) -> None:
    slots = slots_after(job_seconds)
    assert slots.ahead() == ahead
    assert slots.room() == {"default": 10 + ahead}


@pytest.mark.parametrize("job_seconds", [0.0, 0.001, 0.04])
def test_a_set_prefetch_is_held_ahead_whatever_the_run_time_below_short(
    job_seconds: float,
) -> None:
    assert slots_after(job_seconds, prefetch=3).ahead() == 3
    assert slots_after(SHORT_JOB, prefetch=3).ahead() == 0


async def test_a_cancelled_thread_keeps_its_slot_from_jobs_claimed_ahead(
    app: offload.App,
) -> None:
    """A thread task that ignores its cancel flag runs on after the cancel; its slot stays taken
    until it returns, also against a job claimed ahead (the worker's jobs are short here)."""
    began, times = threading.Event(), {}

    @app.task(name="quick")
    async def quick() -> None:
        times["after"] = time.monotonic()

    @app.task(name="stubborn", executor="thread")
    def stubborn() -> None:
        began.set()
        time.sleep(0.8)  # blocking code that never looks at the cancel flag
        times["stubborn returned"] = time.monotonic()

    warmup = [await quick.asubmit() for _ in range(20)]  # short jobs: claiming ahead is on
    worker = offload.Worker(app, concurrency=1)
    task = asyncio.create_task(worker.run())
    try:
        for handle in warmup:
            await handle.aresult(timeout=20)
        assert worker._slots.job_seconds < SHORT_JOB
        job = await stubborn.asubmit()
        assert await asyncio.to_thread(began.wait, 10)
        await job.acancel()
        for _ in range(200):  # the worker records the cancel once it sees it
            if (await job.arefresh()).status == State.CANCELLED:
                break
            await asyncio.sleep(0.01)
        assert job.status == State.CANCELLED
        after = await quick.asubmit()
        await after.aresult(timeout=20)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert times["after"] >= times["stubborn returned"], "a job ran beside the cancelled thread"
