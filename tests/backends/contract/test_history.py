"""The backend contract: history.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.states import Reason, State

from .helpers import (
    LEASE,
    MakeJob,
    assert_history_valid,
    claim_one,
    stored,
    submit_one,
)


async def test_history_records_every_transition(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    t0 = clock.now()
    record = await submit_one(backend, make(delay=5))
    clock.advance(5)
    _, l1 = await claim_one(backend, worker="w1")
    clock.advance(1)
    await backend.fail(l1, {"type": "E", "message": "boom"}, retry_in=0)
    _, l2 = await claim_one(backend, worker="w2")
    await backend.release(l2)
    clock.advance(1)
    _, l3 = await claim_one(backend, worker="w3")
    clock.advance(1)
    await backend.complete(l3, "ok")
    done = await stored(backend, l3.job_id)

    history = await backend.history(record.id)
    assert_history_valid(history, done)
    got = [(e.to_status, e.reason, e.attempt, e.token, e.worker_id) for e in history]
    assert got == [
        (State.SCHEDULED, Reason.SUBMITTED, 0, record.token, None),
        (State.QUEUED, Reason.PROMOTED, 0, record.token, None),
        (State.RUNNING, Reason.CLAIMED, 1, l1.token, "w1"),
        (State.QUEUED, Reason.RETRY, 1, l1.token, "w1"),
        (State.RUNNING, Reason.CLAIMED, 2, l2.token, "w2"),
        (State.QUEUED, Reason.RELEASED, 2, l2.token, "w2"),  # the run that ended, then refunded
        (State.RUNNING, Reason.CLAIMED, 2, l3.token, "w3"),
        (State.SUCCEEDED, Reason.SUCCEEDED, 2, l3.token, "w3"),
    ]
    assert history[0].at == pytest.approx(t0)
    assert history[-1].at == pytest.approx(clock.now())


async def test_history_of_lost_leases_and_cancels(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    lost = await submit_one(backend, make())
    _, lease = await claim_one(backend, worker="gone")
    clock.advance(LEASE)
    await backend.reap()
    pending = await submit_one(backend, make())
    await backend.cancel(pending.id)
    await backend.cancel(lost.id)

    history = await backend.history(lost.id)
    assert_history_valid(history, await stored(backend, lost.id))
    reaped = history[2]
    assert (reaped.reason, reaped.attempt, reaped.token, reaped.worker_id) == (
        Reason.LEASE_EXPIRED,
        1,
        lease.token,
        "gone",
    )
    assert history[-1].reason is Reason.CANCELLED
    assert_history_valid(await backend.history(pending.id), await stored(backend, pending.id))
