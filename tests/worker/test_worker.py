"""The worker in-process, on every backend: executors, retries, timeouts, cancel, limits."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import orjson
import pytest

import offload
from offload.backends.memory import MemoryBackend
from offload.core.clock import ManualClock
from offload.core.ids import new_job_id
from offload.core.job import NewJob
from offload.logs import JSONFormatter
from offload.settings import Settings

State = offload.State


@asynccontextmanager
async def running(app: offload.App, **options: object) -> AsyncIterator[offload.Worker]:
    worker = offload.Worker(app, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_async_and_thread_tasks_succeed_with_progress(app: offload.App) -> None:
    @app.task
    async def double(x: int) -> int:
        offload.current().progress(0.5, "halfway")
        return 2 * x

    @app.task
    def shout(word: str) -> str:
        ctx = offload.current()
        ctx.progress(1.0, f"attempt {ctx.attempt}")
        return word.upper()

    async with running(app):
        a = await double.asubmit(21)
        b = await shout.asubmit("hi")
        assert await a.aresult(timeout=5) == 42
        assert await b.aresult(timeout=5) == "HI"
    await a.arefresh()
    await b.arefresh()
    assert (a.record.progress, a.record.progress_message) == (0.5, "halfway")
    assert (b.record.progress, b.record.progress_message) == (1.0, "attempt 1")
    assert a.attempts == 1


async def test_failures_retry_with_backoff_then_succeed(app: offload.App) -> None:
    @app.task(retries=2, retry_backoff=0.01)
    def flaky() -> int:
        attempt = offload.current().attempt
        if attempt < 3:
            raise RuntimeError(f"boom {attempt}")
        return attempt

    async with running(app):
        job = await flaky.asubmit()
        assert await job.aresult(timeout=5) == 3
    reasons = [t.reason.value for t in await job.ahistory()]
    assert reasons.count("retry") == 2
    assert reasons[-1] == "succeeded"


async def test_retry_exception_sets_the_delay_and_respects_the_budget(app: offload.App) -> None:
    @app.task(retries=1)
    async def later() -> str:
        if offload.current().attempt == 1:
            raise offload.Retry(delay=0.3)
        return "done"

    @app.task
    async def no_budget() -> None:
        raise offload.Retry(delay=0.1)

    async with running(app):
        job = await later.asubmit()
        assert await job.aresult(timeout=5) == "done"
        stuck = await no_budget.asubmit()
        with pytest.raises(offload.JobFailed, match="allows 0 retries"):
            await stuck.aresult(timeout=5)
    history = await job.ahistory()
    retry = next(t for t in history if t.reason.value == "retry")
    second_claim = [t for t in history if t.reason.value == "claimed"][1]
    assert retry.to_status is State.SCHEDULED
    assert second_claim.at - retry.at >= 0.3 - 1e-3


async def test_timeouts_fail_the_job_for_every_executor(app: offload.App) -> None:
    saw_cancel = threading.Event()

    @app.task(timeout=0.2)
    async def slow_async() -> None:
        await asyncio.sleep(30)

    @app.task(timeout=0.2)
    def slow_thread() -> None:
        if offload.current().wait_cancelled(30):
            saw_cancel.set()

    async with running(app):
        jobs = [await slow_async.asubmit(), await slow_thread.asubmit()]
        for job in jobs:
            with pytest.raises(offload.JobFailed, match="JobTimeout") as info:
                await job.aresult(timeout=5)
            assert "timeout" in info.value.error["message"]
        await wait_for(saw_cancel.is_set)
    history = await jobs[0].ahistory()
    assert history[-1].reason.value == "timeout"


async def test_cancelling_running_jobs(app: offload.App) -> None:
    started = threading.Event()

    @app.task
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    @app.task
    def cooperative() -> None:
        ctx = offload.current()
        started.set()
        while True:
            ctx.check_cancelled()
            time.sleep(0.01)

    async with running(app):
        for task in (forever, cooperative):
            started.clear()
            job = await task.asubmit()
            await wait_for(started.is_set)
            await job.acancel()
            with pytest.raises(offload.JobCancelled):
                await job.aresult(timeout=5)
            assert job.status is State.CANCELLED


async def test_still_owner_is_true_while_running_and_false_once_cancelled(
    app: offload.App,
) -> None:
    """The fencing check a task makes before publishing output (docs/guide: tasks that write
    files): true for the run that owns the job, false once the job was cancelled."""
    seen: list[bool] = []
    started = threading.Event()

    @app.task
    def publish() -> None:
        ctx = offload.current()
        seen.append(ctx.still_owner())
        started.set()
        ctx.wait_cancelled(30)
        seen.append(ctx.still_owner())

    async with running(app):
        job = await publish.asubmit()
        await wait_for(started.is_set)
        await job.acancel()
        with pytest.raises(offload.JobCancelled):
            await job.aresult(timeout=5)
    assert seen == [True, False]


async def test_results_that_are_not_json_fail_clearly(app: offload.App) -> None:
    @app.task
    def bad() -> object:
        return object()

    async with running(app):
        job = await bad.asubmit()
        with pytest.raises(offload.JobFailed, match="not JSON"):
            await job.aresult(timeout=5)


async def test_unknown_task_fails_without_retry(app: offload.App) -> None:
    @app.task
    def known() -> None: ...

    backend = await app.backend()
    [record] = await backend.submit([NewJob(new_job_id(), "ghost", [], {})])
    async with running(app):
        job = await app.aget_job(record.id)
        with pytest.raises(offload.JobFailed, match="unknown task 'ghost'"):
            await job.aresult(timeout=5)
    assert job.attempts == 1


async def test_concurrency_and_per_queue_caps_hold(app: offload.App) -> None:
    lock = threading.Lock()
    now: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0, "all": 0}

    def enter(queue: str) -> None:
        with lock:
            now[queue] += 1
            peak[queue] = max(peak[queue], now[queue])
            peak["all"] = max(peak["all"], sum(now.values()))

    def leave(queue: str) -> None:
        with lock:
            now[queue] -= 1

    @app.task(queue="a")
    def in_a() -> None:
        enter("a")
        time.sleep(0.05)
        leave("a")

    @app.task(queue="b")
    async def in_b() -> None:
        enter("b")
        await asyncio.sleep(0.05)
        leave("b")

    jobs = [await in_a.asubmit() for _ in range(6)] + [await in_b.asubmit() for _ in range(6)]
    async with running(app, concurrency=3, queues={"a": 1, "b": None}):
        for job in jobs:
            await job.aresult(timeout=10)
    assert peak["a"] == 1
    assert peak["all"] <= 3
    assert peak["b"] >= 2  # b may use the slots a cannot


async def test_priority_then_due_time_order(app: offload.App) -> None:
    order: list[str] = []

    @app.task
    async def mark(name: str) -> None:
        order.append(name)

    await mark.asubmit("low")
    await mark.options(priority=5).asubmit("high")
    await mark.asubmit("low2")
    async with running(app, concurrency=1):
        await wait_for(lambda: len(order) == 3)
    assert order == ["high", "low", "low2"]


async def test_delayed_jobs_never_run_early(app: offload.App) -> None:
    @app.task
    async def noop() -> None: ...

    async with running(app):
        job = await noop.options(delay=0.4).asubmit()
        await job.aresult(timeout=5)
    assert job.record.started_at is not None
    assert job.record.started_at - job.record.created_at >= 0.4


async def test_stop_drains_then_releases_what_is_left(app: offload.App) -> None:
    started = threading.Event()

    @app.task
    async def quick() -> str:
        await asyncio.sleep(0.1)
        return "done"

    @app.task
    async def endless() -> None:
        started.set()
        await asyncio.sleep(60)

    worker = offload.Worker(app, settings=app.settings.with_(shutdown_grace=0.5))
    task = asyncio.create_task(worker.run())
    q = await quick.asubmit()
    e = await endless.asubmit()
    await wait_for(started.is_set)
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert await q.aresult(timeout=1) == "done"
    await e.arefresh()
    assert e.status is State.QUEUED
    assert e.attempts == 0
    assert (await e.ahistory())[-1].reason.value == "released"


async def test_a_job_whose_lease_is_lost_is_stopped_and_its_result_dropped(
    fast_settings: Settings,
) -> None:
    clock = ManualClock(time.time())
    backend = MemoryBackend(clock=clock)
    app = offload.App(backend, settings=fast_settings)
    started = threading.Event()
    stopped = threading.Event()

    @app.task
    async def long() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()
        return "never recorded"

    async with running(app):
        job = await long.asubmit()
        await wait_for(started.is_set)
        clock.advance(60)  # the backend now sees the lease as expired
        await wait_for(stopped.is_set)
        await wait_for(lambda: backend._jobs[job.id].losses == 1)
    await job.arefresh()
    assert job.status is not State.SUCCEEDED
    assert "lease_expired" in [t.reason.value for t in await job.ahistory()]


async def test_a_busy_worker_runs_a_waiting_suspect_alone(fast_settings: Settings) -> None:
    # With run_alone_after=1, a job caught in a single worker's death runs alone.
    backend = MemoryBackend()
    app = offload.App(backend, settings=fast_settings.with_(run_alone_after=1))
    spans: dict[str, tuple[float, float]] = {}

    @app.task
    async def step(name: str, seconds: float) -> None:
        start = time.monotonic()
        await asyncio.sleep(seconds)
        spans[name] = (start, time.monotonic())

    # Make a suspect: a job whose (pretend) worker vanished mid-run.
    suspect = await step.asubmit("suspect", 0.05)
    await backend.claim("vanished", {"default": 1}, 1, 0.05)
    await asyncio.sleep(0.1)
    assert await backend.reap() == 1
    # Keep the worker busy for longer than one lease, with overlapping jobs.
    busy = [await step.asubmit(f"busy{i}", 0.6 + 0.2 * i) for i in range(8)]
    async with running(app, concurrency=2):
        await suspect.aresult(timeout=10)
        for job in busy:
            await job.aresult(timeout=10)
    start, end = spans["suspect"]
    overlapping = [n for n, (s, e) in spans.items() if n != "suspect" and s < end and e > start]
    assert overlapping == []  # it ran alone
    assert (await suspect.arefresh()).record.losses == 1
    assert start < max(e for _, e in spans.values())  # and did not wait for the stream to end


async def test_a_running_worker_is_listed_and_leaves_the_list_when_it_stops(
    app: offload.App,
) -> None:
    @app.task(queue="pdf")
    async def noop() -> None: ...

    backend = await app.backend()
    async with running(app, name="lister", concurrency=3) as worker:
        deadline = time.monotonic() + 5
        while not (live := await backend.workers()):
            assert time.monotonic() < deadline, "the worker never sent a heartbeat"
            await asyncio.sleep(0.02)
        [info] = live
        assert (info.id, info.name, info.queues, info.concurrency) == (
            worker.id,
            "lister",
            ["pdf"],
            3,
        )
    assert await backend.workers() == []


async def test_a_second_stop_cuts_the_grace_period_short(app: offload.App) -> None:
    started = threading.Event()

    @app.task
    async def endless() -> None:
        started.set()
        await asyncio.sleep(60)

    worker = offload.Worker(app, settings=app.settings.with_(shutdown_grace=30))
    task = asyncio.create_task(worker.run())
    job = await endless.asubmit()
    await wait_for(started.is_set)
    worker.stop()  # first signal: drain for up to 30 s
    await asyncio.sleep(0.2)
    assert not task.done()
    began = time.monotonic()
    worker.stop(graceful=False)  # second signal: release now
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - began < 3
    await job.arefresh()
    assert (job.status, job.attempts) == (State.QUEUED, 0)


async def test_workers_prune_jobs_whose_result_ttl_ran_out(app: offload.App) -> None:
    @app.task(result_ttl=0)
    async def fleeting() -> str:
        return "gone soon"

    @app.task
    async def lasting() -> str:  # the app's default result_ttl: 7 days
        return "kept"

    short, long = await fleeting.asubmit(), await lasting.asubmit()
    backend = await app.backend()
    async with running(app, settings=app.settings.with_(prune_interval=0.1)):
        assert await long.aresult(timeout=5) == "kept"

        async def gone() -> bool:
            return await backend.get(short.id) is None

        deadline = time.monotonic() + 5
        while not await gone():
            assert time.monotonic() < deadline, "the expired job was not pruned"
            await asyncio.sleep(0.05)
    assert await backend.history(short.id) == []
    assert (await long.arefresh()).record.status is State.SUCCEEDED


async def lost_jobs(backend: MemoryBackend, times: int, *jobs: offload.Job) -> None:
    """Make suspects: each of ``jobs`` was running on ``times`` workers that vanished."""
    for _ in range(times):
        claimed = await backend.claim(
            "vanished", {"default": len(jobs)}, len(jobs), 0.05, idle=True
        )
        while claimed:  # the backend hands out one suspect per claim
            claimed = await backend.claim("vanished", {"default": 9}, 9, 0.05, idle=True)
        await asyncio.sleep(0.1)
        assert await backend.reap() == len(jobs)


async def test_by_default_jobs_of_one_dead_worker_run_side_by_side_but_repeat_ones_alone(
    fast_settings: Settings,
) -> None:
    """Slots follow the living: the jobs of a worker that died once run with the normal
    concurrency (not one at a time); a job that was there when two workers died runs alone."""
    backend = MemoryBackend()
    app = offload.App(backend, settings=fast_settings)
    assert fast_settings.run_alone_after == 2
    spans: dict[str, tuple[float, float]] = {}

    @app.task
    async def step(name: str, seconds: float) -> None:
        start = time.monotonic()
        await asyncio.sleep(seconds)
        spans[name] = (start, time.monotonic())

    innocent = [await step.asubmit(f"innocent{i}", 0.4) for i in range(3)]
    await lost_jobs(backend, 1, *innocent)
    async with running(app, concurrency=4):
        for job in innocent:
            await job.aresult(timeout=10)
    starts = [spans[f"innocent{i}"][0] for i in range(3)]
    ends = [spans[f"innocent{i}"][1] for i in range(3)]
    assert max(starts) < min(ends)  # all three ran at the same time

    spans.clear()
    repeat = await step.asubmit("repeat", 0.3)
    await lost_jobs(backend, 2, repeat)
    others = [await step.asubmit(f"other{i}", 0.3) for i in range(4)]
    async with running(app, concurrency=4):
        for job in (repeat, *others):
            await job.aresult(timeout=10)
    start, end = spans["repeat"]
    assert [n for n, (s, e) in spans.items() if n != "repeat" and s < end and e > start] == []


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def test_an_exception_whose_str_raises_is_still_recorded(app: offload.App) -> None:
    @app.task
    def broken() -> None:
        raise Unprintable()

    async with running(app):
        job = await broken.asubmit()
        with pytest.raises(offload.JobFailed):
            await job.aresult(timeout=5)
    assert job.attempts == 1
    assert job.record.error is not None
    assert job.record.error["type"] == "Unprintable"
    assert "Unprintable" in job.record.error["message"]


async def test_results_json_cannot_hold_fail_instead_of_becoming_null(app: offload.App) -> None:
    @app.task
    def not_a_number() -> dict[str, float]:
        return {"x": float("nan")}

    async with running(app):
        job = await not_a_number.asubmit()
        with pytest.raises(offload.JobFailed, match="nan, which JSON cannot represent"):
            await job.aresult(timeout=5)


async def test_results_error_and_progress_messages_are_capped(app: offload.App) -> None:
    @app.task
    def big() -> str:
        return "x" * 500

    @app.task
    def loud() -> None:
        offload.current().progress(0.5, "p" * 100)
        raise ValueError("e" * 5000)

    caps = app.settings.with_(max_result_bytes=200, max_error_chars=300, max_progress_chars=20)
    async with running(app, settings=caps):
        too_big = await big.asubmit()
        with pytest.raises(offload.JobFailed, match="more than max_result_bytes"):
            await too_big.aresult(timeout=5)
        failing = await loud.asubmit()
        with pytest.raises(offload.JobFailed):
            await failing.aresult(timeout=5)
    assert too_big.record.result is None
    assert too_big.record.error is not None
    assert too_big.record.error["type"] == "ResultTooLarge"
    error = failing.record.error
    assert error is not None
    assert error["message"] == "e" * 300 + "... [4700 more characters cut]"
    assert failing.record.progress_message == "p" * 20 + "... [80 more characters cut]"


def test_caps_must_be_positive() -> None:
    with pytest.raises(offload.ConfigurationError, match="max_result_bytes"):
        Settings(max_result_bytes=0)


async def test_to_thread_in_async_tasks_gets_a_thread_per_slot(tmp_path: object) -> None:
    """40 slots (more than asyncio's default pool ever has: min(32, CPUs + 4)): 40 async
    jobs in ``asyncio.to_thread`` at once all get a thread, or the barrier breaks."""
    app = offload.App(MemoryBackend(), settings=Settings(idle_wait=0.05))
    together = threading.Barrier(40, timeout=20)

    @app.task
    async def query(i: int) -> str:
        def blocking() -> str:
            together.wait()
            return threading.current_thread().name

        return await asyncio.to_thread(blocking)

    async with running(app, concurrency=40):
        jobs = [await query.asubmit(i) for i in range(40)]
        names = [await job.aresult(timeout=30) for job in jobs]
    assert all(name.startswith("offload-to-thread") for name in names)


async def test_loop_threads_sets_the_pool_size() -> None:
    app = offload.App(MemoryBackend(), settings=Settings(idle_wait=0.05, loop_threads=2))

    def nap() -> str:
        time.sleep(0.02)
        return threading.current_thread().name

    @app.task
    async def names() -> list[str]:
        threads = await asyncio.gather(*(asyncio.to_thread(nap) for _ in range(6)))
        return sorted(set(threads))

    async with running(app, concurrency=10):
        used = await (await names.asubmit()).aresult(timeout=10)
    assert len(used) <= 2
    assert all(name.startswith("offload-to-thread") for name in used)
    with pytest.raises(offload.ConfigurationError, match="loop_threads"):
        Settings(loop_threads=-1)


async def test_lines_a_jobs_code_logs_carry_the_jobs_fields() -> None:
    lines: list[str] = []
    handler = logging.Handler()
    handler.setFormatter(JSONFormatter())
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("tests.job_code")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    app = offload.App(MemoryBackend(), settings=Settings(idle_wait=0.05))

    @app.task
    def in_a_thread() -> None:
        logger.info("from a thread task")

    @app.task
    async def on_the_loop() -> None:
        logger.info("from an async task")

    try:
        async with running(app):
            threaded = await in_a_thread.options(meta={"request_id": "req-9"}).asubmit()
            looped = await on_the_loop.asubmit()
            await threaded.aresult(timeout=10)
            await looped.aresult(timeout=10)
    finally:
        logger.removeHandler(handler)
    got = {x["message"]: x for x in map(orjson.loads, lines)}
    assert (got["from a thread task"]["job_id"], got["from a thread task"]["request_id"]) == (
        threaded.id,
        "req-9",
    )
    assert (got["from an async task"]["job_id"], got["from an async task"]["task"]) == (
        looped.id,
        on_the_loop.name,
    )
    assert "request_id" not in got["from an async task"]


@pytest.mark.parametrize("concurrency", [0, -1, True, 2.5])
def test_a_worker_refuses_a_number_of_slots_below_one(
    app: offload.App, concurrency: object
) -> None:
    # 0 meant the default (10 slots) without a word, and -1 failed inside asyncio.
    with pytest.raises(ValueError, match="concurrency"):
        offload.Worker(app, concurrency=concurrency)  # type: ignore[arg-type]
