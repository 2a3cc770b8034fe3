"""The backend contract: fail and retry.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.states import Reason, State

from .helpers import (
    MakeJob,
    claim_one,
    nothing_claimable,
    stored,
    submit_one,
)


async def test_fail_without_retry_is_final(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await submit_one(backend, make())
    _, lease = await claim_one(backend)
    error = {"type": "ValueError", "message": "bad input", "traceback": "..."}
    await backend.fail(lease, error)
    failed = await stored(backend, lease.job_id)
    assert failed.status is State.FAILED
    assert failed.error == error
    assert failed.finished_at == pytest.approx(clock.now())
    assert (await backend.history(failed.id))[-1].reason is Reason.FAILED
    assert await nothing_claimable(backend)


async def test_fail_records_the_reason_given(backend: Backend, make: MakeJob) -> None:
    await submit_one(backend, make())
    _, lease = await claim_one(backend)
    await backend.fail(lease, {"type": "JobTimeout", "message": "slow"}, reason=Reason.TIMEOUT)
    failed = await stored(backend, lease.job_id)
    assert failed.status is State.FAILED
    assert (await backend.history(failed.id))[-1].reason is Reason.TIMEOUT


async def test_fail_with_retry_now_requeues(backend: Backend, make: MakeJob) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    error = {"type": "IOError", "message": "flaky"}
    await backend.fail(lease, error, retry_in=0)
    retried = await stored(backend, lease.job_id)
    assert retried.status is State.QUEUED
    assert retried.attempts == 1
    assert retried.error == error
    assert (await backend.history(record.id))[-1].reason is Reason.RETRY
    again, _ = await claim_one(backend)
    assert again.id == record.id
    assert again.attempts == 2
    assert again.token > record.token


async def test_fail_with_retry_later_schedules(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    await backend.fail(lease, {"type": "E", "message": "later"}, retry_in=15)
    retried = await stored(backend, lease.job_id)
    assert retried.status is State.SCHEDULED
    assert retried.run_at == pytest.approx(clock.now() + 15)
    clock.advance(14)
    assert await nothing_claimable(backend)
    clock.advance(1)
    again, _ = await claim_one(backend)
    assert (again.id, again.attempts) == (record.id, 2)
