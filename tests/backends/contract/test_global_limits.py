"""The backend contract: global limits: concurrency caps and rate limits.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.job import Lease, NewJob
from offload.core.limits import Limits
from offload.core.states import Reason, State

from .helpers import (
    ALL,
    LEASE,
    MakeJob,
    stored,
)


def limited(make: MakeJob, **limits: Any) -> Callable[..., NewJob]:
    """A maker of jobs of one limited task ("tasks.limited")."""
    lim = Limits(**limits)
    return lambda **fields: make(task="tasks.limited", limits=lim, **fields)


async def test_a_task_cap_holds_across_workers(backend: Backend, make: MakeJob) -> None:
    job = limited(make, concurrency=2)
    await backend.submit([job() for _ in range(5)])
    first = await backend.claim("w1", ALL, 10, LEASE)
    assert len(first) == 2
    assert await backend.claim("w2", ALL, 10, LEASE) == []
    await backend.complete(Lease(first[0].id, first[0].token), None)
    [third] = await backend.claim("w2", ALL, 10, LEASE)
    assert third.status is State.RUNNING
    assert await backend.claim("w3", ALL, 10, LEASE) == []


async def test_jobs_waiting_for_a_slot_do_not_block_the_jobs_behind_them(
    backend: Backend, make: MakeJob
) -> None:
    capped = limited(make, concurrency=1)
    heads = await backend.submit([capped(priority=9) for _ in range(3)])
    others = await backend.submit([make(priority=0) for _ in range(2)])
    claimed = await backend.claim("w1", ALL, 10, LEASE)
    assert [j.id for j in claimed] == [heads[0].id, others[0].id, others[1].id]
    assert {j.status for j in [await stored(backend, h.id) for h in heads[1:]]} == {State.QUEUED}


async def test_a_key_cap_holds_per_key(backend: Backend, make: MakeJob) -> None:
    job = limited(make, key_concurrency=1)
    a1, a2, b1 = await backend.submit(
        [job(concurrency_key="a"), job(concurrency_key="a"), job(concurrency_key="b")]
    )
    claimed = await backend.claim("w1", ALL, 10, LEASE)
    assert {j.id for j in claimed} == {a1.id, b1.id}
    await backend.complete(Lease(a1.id, claimed[0].token), None)
    [next_a] = await backend.claim("w1", ALL, 10, LEASE)
    assert next_a.id == a2.id


async def test_a_reaped_lease_frees_its_slot(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    job = limited(make, concurrency=1)
    first, second = await backend.submit([job(), job()])
    [running] = await backend.claim("w1", ALL, 10, LEASE)
    assert running.id == first.id
    clock.advance(LEASE)  # w1 died
    assert await backend.reap() == 1
    [again] = await backend.claim("w2", ALL, 10, LEASE)
    assert again.id == second.id  # the slot came back with the lease; the suspect waits
    await backend.complete(Lease(again.id, again.token), None)
    [suspect] = await backend.claim("w2", ALL, 10, LEASE, idle=True)
    assert suspect.id == first.id


async def test_a_rate_limit_spreads_starts_and_defers_without_an_attempt(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    job = limited(make, rate=0.5)  # two starts a second
    t0 = clock.now()
    jobs = await backend.submit([job() for _ in range(3)])
    [started] = await backend.claim("w1", ALL, 10, LEASE)
    assert started.id == jobs[0].id
    for n, waiting in enumerate(jobs[1:], start=1):
        record = await stored(backend, waiting.id)
        assert record.status is State.SCHEDULED
        assert record.attempts == 0
        assert record.run_at == pytest.approx(t0 + 0.5 * n)
        assert (await backend.history(waiting.id))[-1].reason is Reason.RATE_LIMITED
    assert await backend.claim("w1", ALL, 10, LEASE) == []
    clock.advance(0.5)
    assert [j.id for j in await backend.claim("w1", ALL, 10, LEASE)] == [jobs[1].id]
    clock.advance(0.5)
    [last] = await backend.claim("w1", ALL, 10, LEASE)
    assert last.id == jobs[2].id
    assert last.attempts == 1
    # Each job was deferred at most once: its start was reserved when it was deferred.
    reasons = [t.reason for t in await backend.history(last.id)]
    assert reasons.count(Reason.RATE_LIMITED) == 1


async def test_a_key_rate_limit_is_per_key(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    job = limited(make, key_rate=10.0)
    a1, a2, b1 = await backend.submit(
        [job(concurrency_key="a"), job(concurrency_key="a"), job(concurrency_key="b")]
    )
    claimed = await backend.claim("w1", ALL, 10, LEASE)
    assert {j.id for j in claimed} == {a1.id, b1.id}
    assert (await stored(backend, a2.id)).run_at == pytest.approx(clock.now() + 10)


async def test_a_job_waiting_for_a_slot_does_not_wake_idle_workers_until_one_frees(
    backend: Backend, make: MakeJob
) -> None:
    job = limited(make, concurrency=1)
    await backend.submit([job(), job()])
    [running] = await backend.claim("w1", ALL, 10, LEASE)
    started = time.monotonic()
    await backend.wait_for_work(["default"], 0.3)
    assert time.monotonic() - started >= 0.25  # nothing it could start: it slept
    waiting = asyncio.ensure_future(backend.wait_for_work(["default"], 10.0))
    await asyncio.sleep(0.05)
    await backend.complete(Lease(running.id, running.token), None)
    await asyncio.wait_for(waiting, 5.0)  # the freed slot woke it
