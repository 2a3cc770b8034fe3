"""The backend contract: renew.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

import pytest

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.job import Lease
from offload.core.states import State

from .helpers import (
    LEASE,
    MakeJob,
    claim_one,
    stored,
    submit_one,
)


async def test_renew_extends_the_lease(backend: Backend, clock: ManualClock, make: MakeJob) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    clock.advance(20)
    result = await backend.renew("w1", [lease], LEASE)
    assert result.lost == frozenset()
    assert result.cancel_requested == frozenset()
    assert (await stored(backend, record.id)).lease_until == pytest.approx(clock.now() + LEASE)
    clock.advance(20)  # past the first deadline, inside the renewed one
    await backend.complete(lease, "ok")
    done = await stored(backend, lease.job_id)
    assert done.status is State.SUCCEEDED


async def test_renew_without_lease_seconds_only_inspects(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    clock.advance(20)
    result = await backend.renew("w1", [lease], None)
    assert result.lost == frozenset()
    assert (await stored(backend, record.id)).lease_until == record.lease_until
    clock.advance(10)
    assert (await backend.renew("w1", [lease], None)).lost == {record.id}


async def test_renew_reports_lost_leases(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await backend.submit([make(), make()])
    wrong, wrong_lease = await claim_one(backend, lease=100)
    done, done_lease = await claim_one(backend, lease=100)
    await backend.complete(done_lease, None)
    await submit_one(backend, make())
    held, held_lease = await claim_one(backend, lease=100)
    leases = [
        Lease(wrong.id, wrong_lease.token + 1),
        done_lease,
        held_lease,
        Lease("f" * 32, 1),
    ]
    result = await backend.renew("w1", leases, LEASE)
    assert result.lost == {wrong.id, done.id, "f" * 32}
    assert held.id not in result.lost

    clock.advance(LEASE)  # the renewed lease ends exactly now: expired
    assert held.id in (await backend.renew("w1", [held_lease], LEASE)).lost
    assert held.id in (await backend.renew("w1", [held_lease], None)).lost


async def test_renew_reports_cancel_requests(backend: Backend, make: MakeJob) -> None:
    await backend.submit([make(), make()])
    cancelled, cancelled_lease = await claim_one(backend)
    _, other_lease = await claim_one(backend)
    await backend.cancel(cancelled.id)
    result = await backend.renew("w1", [cancelled_lease, other_lease], LEASE)
    assert result.cancel_requested == {cancelled.id}
    assert result.lost == frozenset()
    assert (await backend.renew("w1", [cancelled_lease], None)).cancel_requested == {cancelled.id}
