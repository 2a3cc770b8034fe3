"""The backend contract: idempotency.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

import pytest

from offload.backends.base import IDEMPOTENCY_WINDOW, Backend
from offload.core.clock import ManualClock
from offload.core.job import JobFilter
from offload.core.states import State
from offload.errors import IdempotencyConflict

from .helpers import (
    MakeJob,
    claim_one,
    submit_one,
)


async def test_same_idempotency_key_and_body_returns_the_same_job(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    first = await submit_one(backend, make(idempotency_key="k", fingerprint="fp"))
    clock.advance(IDEMPOTENCY_WINDOW - 1)
    again = await submit_one(backend, make(idempotency_key="k", fingerprint="fp"))
    assert again == first
    page = await backend.list_jobs(JobFilter())
    assert [j.id for j in page.jobs] == [first.id]


async def test_idempotency_returns_the_job_as_it_is_now(backend: Backend, make: MakeJob) -> None:
    first = await submit_one(backend, make(idempotency_key="k", fingerprint="fp"))
    _, lease = await claim_one(backend)
    await backend.complete(lease, 42)
    again = await submit_one(backend, make(idempotency_key="k", fingerprint="fp"))
    assert again.id == first.id
    assert (again.status, again.result) == (State.SUCCEEDED, 42)


async def test_same_idempotency_key_with_another_body_conflicts(
    backend: Backend, make: MakeJob
) -> None:
    first = await submit_one(backend, make(idempotency_key="k", fingerprint="fp-1"))
    with pytest.raises(IdempotencyConflict) as caught:
        await submit_one(backend, make(idempotency_key="k", fingerprint="fp-2"))
    assert caught.value.job_id == first.id
    assert len((await backend.list_jobs(JobFilter())).jobs) == 1


async def test_idempotency_key_expires_after_its_window(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    first = await submit_one(backend, make(idempotency_key="k", fingerprint="fp"))
    clock.advance(IDEMPOTENCY_WINDOW + 1)
    second = await submit_one(backend, make(idempotency_key="k", fingerprint="other"))
    assert second.id != first.id
    third = await submit_one(backend, make(idempotency_key="k", fingerprint="other"))
    assert third.id == second.id


async def test_idempotency_keys_are_per_tenant(backend: Backend, make: MakeJob) -> None:
    a = await submit_one(backend, make(idempotency_key="k", fingerprint="1", tenant="a"))
    b = await submit_one(backend, make(idempotency_key="k", fingerprint="2", tenant="b"))
    assert a.id != b.id
    assert (
        await submit_one(backend, make(idempotency_key="k", fingerprint="2", tenant="b"))
    ).id == b.id


async def test_batch_with_a_conflict_stores_nothing(backend: Backend, make: MakeJob) -> None:
    await submit_one(backend, make(idempotency_key="k", fingerprint="1"))
    innocent = make()
    with pytest.raises(IdempotencyConflict):
        await backend.submit([innocent, make(idempotency_key="k", fingerprint="2")])
    assert await backend.get(innocent.id) is None

    first, second = (
        make(idempotency_key="k2", fingerprint="1"),
        make(idempotency_key="k2", fingerprint="2"),
    )
    with pytest.raises(IdempotencyConflict):
        await backend.submit([first, second])
    assert await backend.get(first.id) is None
    assert len((await backend.list_jobs(JobFilter())).jobs) == 1
    # The key was not taken by the failed batch.
    assert (
        await submit_one(backend, make(idempotency_key="k2", fingerprint="2"))
    ).status is State.QUEUED


async def test_repeated_key_within_a_batch_names_one_job(backend: Backend, make: MakeJob) -> None:
    first, second = await backend.submit(
        [make(idempotency_key="k", fingerprint="1"), make(idempotency_key="k", fingerprint="1")]
    )
    assert first.id == second.id
    assert len((await backend.list_jobs(JobFilter())).jobs) == 1
