"""The backend contract: release.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

from offload.backends.base import Backend
from offload.core.states import Reason, State

from .helpers import (
    MakeJob,
    claim_one,
    stored,
    submit_one,
)


async def test_release_refunds_the_attempt_and_requeues(backend: Backend, make: MakeJob) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    await backend.release(lease)
    released = await stored(backend, lease.job_id)
    assert released.status is State.QUEUED
    assert released.attempts == 0
    assert released.losses == 0
    assert (await backend.history(record.id))[-1].reason is Reason.RELEASED
    again, _ = await claim_one(backend, worker="w2")
    assert (again.id, again.attempts, again.worker_id) == (record.id, 1, "w2")
    assert again.token > record.token
