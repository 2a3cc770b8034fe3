"""The backend contract: each queue's oldest ready job age in ``stats()``.

A job is ready from its due time (``run_at``: its submit, or the end of its delay or backoff)
until a worker claims it, whether or not a claim has promoted it yet; the age is read at the
backend's clock. Runs unchanged against every backend kind in ``tests/backends/conftest.py``.
"""

from __future__ import annotations

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.limits import Limits

from .helpers import LEASE, MakeJob, claim_one


async def _ages(backend: Backend) -> dict[str, float | None]:
    return {s.queue: s.oldest_ready_age for s in await backend.stats()}


async def test_no_ready_job_has_no_age(backend: Backend, make: MakeJob) -> None:
    await backend.submit([make(queue="later", delay=60), make(queue="busy")])
    await claim_one(backend, queue="busy")
    assert await _ages(backend) == {"later": None, "busy": None}


async def test_age_of_the_oldest_ready_job_per_queue(
    backend: Backend, make: MakeJob, clock: ManualClock
) -> None:
    await backend.submit([make(queue="a", priority=0)])
    clock.advance(5)
    await backend.submit([make(queue="a", priority=9), make(queue="b")])
    clock.advance(10)
    ages = await _ages(backend)
    assert ages["a"] == pytest.approx(15)  # a higher priority does not hide an older job
    assert ages["b"] == pytest.approx(10)
    await claim_one(backend, queue="a")  # the priority 9 job
    await claim_one(backend, queue="a")  # the oldest
    assert (await _ages(backend))["a"] is None


async def test_a_due_job_is_ready_before_any_claim_promotes_it(
    backend: Backend, make: MakeJob, clock: ManualClock
) -> None:
    await backend.submit([make(delay=60)])
    clock.advance(59)
    assert (await _ages(backend))["default"] is None
    clock.advance(31)
    assert (await _ages(backend))["default"] == pytest.approx(30)  # due 30 s ago: no worker ran


async def test_limited_and_suspect_jobs_count(
    backend: Backend, make: MakeJob, clock: ManualClock
) -> None:
    await backend.submit([make(queue="capped", limits=Limits(concurrency=1))])
    await backend.submit([make(queue="lost")])
    await claim_one(backend, queue="lost", lease=LEASE)
    clock.advance(LEASE + 1)
    await backend.reap(100)  # back to queued as a suspect
    clock.advance(4)
    ages = await _ages(backend)
    assert ages["capped"] == pytest.approx(LEASE + 5)
    assert ages["lost"] is not None
    assert 0 <= ages["lost"] <= LEASE + 5  # due again from the reap, or still from its submit


async def test_queue_names_that_extend_one_another_stay_apart(
    backend: Backend, make: MakeJob, clock: ManualClock
) -> None:
    await backend.submit([make(queue="mail")])
    clock.advance(5)
    await backend.submit([make(queue="mail:0"), make(queue="mail:0", delay=1)])
    clock.advance(2)
    ages = await _ages(backend)
    assert (ages["mail"], ages["mail:0"]) == (pytest.approx(7), pytest.approx(2))
