"""What the backend contract files share: the lease length, job shortcuts, history checks.

Every ``test_*.py`` beside this module runs unchanged against every backend kind in
``tests/backends/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.job import JobRecord, Lease, NewJob, Transition, WorkerInfo
from offload.core.states import TRANSITIONS, State

LEASE = 30.0
ALL = {"default": 100}

MakeJob = Callable[..., NewJob]


async def submit_one(backend: Backend, job: NewJob) -> JobRecord:
    [record] = await backend.submit([job])
    return record


async def claim_one(
    backend: Backend,
    worker: str = "w1",
    queue: str = "default",
    lease: float = LEASE,
    *,
    idle: bool = False,
) -> tuple[JobRecord, Lease]:
    [record] = await backend.claim(worker, {queue: 1}, 1, lease, idle=idle)
    return record, Lease(record.id, record.token)


async def stored(backend: Backend, job_id: str) -> JobRecord:
    record = await backend.get(job_id)
    assert record is not None, f"job {job_id} is gone"
    return record


async def nothing_claimable(backend: Backend, queues: dict[str, int] = ALL) -> bool:
    return await backend.claim("probe", queues, 100, LEASE) == []


def assert_history_valid(history: list[Transition], current: JobRecord) -> None:
    """A chain of allowed moves from 'not stored' to the job's current state."""
    assert history, "a stored job has at least its submit in its history"
    previous: State | None = None
    for entry in history:
        assert entry.job_id == current.id
        assert entry.from_status == previous, history
        assert entry.to_status in TRANSITIONS[entry.from_status], entry
        previous = entry.to_status
    assert previous == current.status
    times = [entry.at for entry in history]
    assert times == sorted(times)


async def lose_once(backend: Backend, clock: ManualClock, job: NewJob) -> JobRecord:
    """Submit ``job`` (into an empty backend), claim it and let its lease expire."""
    await submit_one(backend, job)
    record, _ = await claim_one(backend, queue=job.queue)
    clock.advance(LEASE)
    assert await backend.reap() == 1
    suspect = await stored(backend, record.id)
    assert (suspect.status, suspect.losses) == (State.QUEUED, 1)
    return suspect


def worker_info(worker_id: str, started_at: float = 0.0, running: int = 0) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        name="w",
        host="h",
        pid=1,
        queues=["default", "pdf"],
        concurrency=4,
        started_at=started_at,
        last_seen=0.0,
        running=running,
        processed=0,
    )
