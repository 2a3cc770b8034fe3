"""The backend contract: submit.

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


async def test_submit_returns_the_stored_queued_job(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    new = make(
        task="mail.send",
        args=[1, "two"],
        kwargs={"to": "a@example.com"},
        queue="mail",
        priority=3,
        concurrency_key="tenant-7",
        tenant="acme",
        meta={"request_id": "r-1"},
    )
    record = await submit_one(backend, new)
    now = clock.now()
    assert record.id == new.id
    assert (record.task, record.queue, record.status) == ("mail.send", "mail", State.QUEUED)
    assert (record.args, record.kwargs) == ([1, "two"], {"to": "a@example.com"})
    assert (record.priority, record.attempts, record.losses) == (3, 0, 0)
    assert (record.concurrency_key, record.tenant, record.meta) == (
        "tenant-7",
        "acme",
        {"request_id": "r-1"},
    )
    assert record.run_at == pytest.approx(now)
    assert record.created_at == pytest.approx(now)
    assert record.worker_id is None
    assert record.lease_until is None
    assert record.result is None
    assert record.error is None
    assert not record.cancel_requested
    assert await backend.get(new.id) == record
    [entry] = await backend.history(new.id)
    assert (entry.from_status, entry.to_status, entry.reason) == (None, State.QUEUED, "submitted")


async def test_submit_stores_a_batch_in_order(backend: Backend, make: MakeJob) -> None:
    jobs = [make() for _ in range(5)]
    records = await backend.submit(jobs)
    assert [r.id for r in records] == [j.id for j in jobs]
    for record in records:
        assert await backend.get(record.id) == record


@pytest.mark.parametrize("how", ["delay", "run_at"])
async def test_future_job_is_scheduled_until_due_then_promoted(
    backend: Backend, clock: ManualClock, make: MakeJob, how: str
) -> None:
    start = clock.now()
    timing = {"delay": 10.0} if how == "delay" else {"run_at": start + 10.0, "delay": 999.0}
    record = await submit_one(backend, make(**timing))
    assert record.status is State.SCHEDULED
    assert record.run_at == pytest.approx(start + 10.0)

    assert await nothing_claimable(backend)
    clock.advance(9.5)
    assert await nothing_claimable(backend)
    assert (await stored(backend, record.id)).status is State.SCHEDULED

    clock.advance(0.5)
    claimed, _ = await claim_one(backend)
    assert claimed.id == record.id
    reasons = [(e.from_status, e.to_status, e.reason) for e in await backend.history(record.id)]
    assert reasons == [
        (None, State.SCHEDULED, Reason.SUBMITTED),
        (State.SCHEDULED, State.QUEUED, Reason.PROMOTED),
        (State.QUEUED, State.RUNNING, Reason.CLAIMED),
    ]


async def test_run_at_in_the_past_is_queued(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    record = await submit_one(backend, make(run_at=clock.now() - 60))
    assert record.status is State.QUEUED
    claimed, _ = await claim_one(backend)
    assert claimed.id == record.id
