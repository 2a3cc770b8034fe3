"""Global limits with several workers, on every backend, checked from the recorded history
(the backend's clock), never from timings measured by the test."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

import offload
from offload.core.job import Transition
from offload.core.states import Reason, State


async def workers(stack: AsyncExitStack, app: offload.App, count: int = 3) -> None:
    """Start ``count`` workers (each its own id and slots); stopped when the stack closes."""
    for n in range(count):
        worker = offload.Worker(app, name=f"w{n}", concurrency=4)
        task = asyncio.create_task(worker.run())

        async def stop(worker: offload.Worker = worker, task: asyncio.Task[None] = task) -> None:
            worker.stop()
            await asyncio.wait_for(task, 10)

        stack.push_async_callback(stop)


def runs(history: list[Transition]) -> list[tuple[float, float]]:
    """(start, end) of each run: from a claim to the next move out of running."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for t in history:
        if t.to_status is State.RUNNING:
            start = t.at
        elif t.from_status is State.RUNNING and start is not None:
            out.append((start, t.at))
            start = None
    return out


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one instant (an end before a start at a tie)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


async def histories(jobs: list[offload.Job]) -> list[list[Transition]]:
    return [await job.ahistory() for job in jobs]


async def test_a_cap_of_two_never_has_three_running(app: offload.App) -> None:
    @app.task(concurrency=2)
    async def render(n: int) -> int:
        await asyncio.sleep(0.05)
        return n

    jobs = [await render.asubmit(n) for n in range(12)]
    async with AsyncExitStack() as stack:
        await workers(stack, app)
        for job in jobs:
            await job.aresult(timeout=30)
    intervals = [r for h in await histories(jobs) for r in runs(h)]
    assert len(intervals) == 12
    assert most_at_once(intervals) == 2  # the cap was used, and never exceeded


async def test_a_tenant_flooding_its_key_does_not_hold_up_another_key(app: offload.App) -> None:
    @app.task(key_concurrency=1)
    async def generate(tenant: str, n: int) -> str:
        await asyncio.sleep(0.05)
        return tenant

    flood = [await generate.options(concurrency_key="a").asubmit("a", n) for n in range(15)]
    trickle = [await generate.options(concurrency_key="b").asubmit("b", n) for n in range(3)]
    async with AsyncExitStack() as stack:
        await workers(stack, app)
        for job in flood + trickle:
            await job.aresult(timeout=30)
    flood_runs = [r for h in await histories(flood) for r in runs(h)]
    trickle_runs = [r for h in await histories(trickle) for r in runs(h)]
    assert most_at_once(flood_runs) == 1
    assert most_at_once(trickle_runs) == 1
    # b's jobs ran alongside a's backlog, not after it: all of b was done before a was.
    assert max(end for _, end in trickle_runs) < max(end for _, end in flood_runs)


async def test_a_rate_limit_of_20_per_second_starts_60_jobs_in_3_seconds(
    app: offload.App,
) -> None:
    @app.task(rate_limit="20/s")
    async def call_llm(n: int) -> int:
        return n

    jobs = await app.asubmit_many(
        [app.prepare(call_llm.spec, [n], {}, offload.SubmitOptions()) for n in range(100)]
    )
    async with AsyncExitStack() as stack:
        await workers(stack, app)
        await asyncio.sleep(3.6)
    starts = sorted(t.at for h in await histories(jobs) for t in h if t.reason is Reason.CLAIMED)
    first = starts[0]
    in_window = [s for s in starts if s < first + 3.0]
    assert 58 <= len(in_window) <= 62, len(in_window)
    # A job that had to wait was deferred once, with no attempt charged.
    for history in await histories(jobs):
        assert [t.reason for t in history].count(Reason.RATE_LIMITED) <= 1
        claims = [t for t in history if t.reason is Reason.CLAIMED]
        assert all(t.attempt == 1 for t in claims)


def test_bad_limits_are_refused_at_declaration() -> None:
    app = offload.App("memory://")

    def noop() -> None:
        return None

    with pytest.raises(ValueError, match=r"rate_limit '60 per minute' is not a rate"):
        app.task(rate_limit="60 per minute")(noop)
    with pytest.raises(ValueError, match=r"key_rate_limit '0/s' must allow at least one"):
        app.task(key_rate_limit="0/s")(noop)
    with pytest.raises(ValueError, match=r"concurrency must be a whole number .* not 0"):
        app.task(concurrency=0)(noop)
    with pytest.raises(ValueError, match=r"key_concurrency must be .* not 2.5"):
        app.task(key_concurrency=2.5)(noop)  # type: ignore[arg-type]
