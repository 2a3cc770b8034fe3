"""The backend contract: retention.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.job import JobFilter, JobRecord, Lease, NewJob
from offload.core.retention import Retention, RetentionPolicy
from offload.core.states import State

from .helpers import (
    LEASE,
    MakeJob,
    stored,
    submit_one,
)


async def finish_one(backend: Backend, job: NewJob, how: str = "complete") -> JobRecord:
    """Submit ``job`` and take it to an end: complete, fail, or cancel while queued."""
    record = await submit_one(backend, job)
    if how == "cancel":
        return await backend.cancel(record.id)
    [claimed] = await backend.claim("w1", {record.queue: 1}, 1, LEASE)
    lease = Lease(claimed.id, claimed.token)
    if how == "fail":
        await backend.fail(lease, {"type": "E", "message": "no"})
    else:
        await backend.complete(lease, "done")
    return await stored(backend, lease.job_id)


async def test_prune_deletes_only_ended_jobs_whose_ttl_ran_out(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    expiring = [
        await finish_one(backend, make(result_ttl=10), how)
        for how in ("complete", "fail", "cancel")
    ]
    forever = await finish_one(backend, make())  # no result_ttl: kept
    later = await finish_one(backend, make(result_ttl=100))
    running = await submit_one(backend, make(result_ttl=10, queue="slow"))
    await backend.claim("w1", {"slow": 1}, 1, LEASE)
    queued = await submit_one(backend, make(result_ttl=10))
    kept = [forever, later, running, queued]

    clock.advance(9.5)
    assert await backend.prune() == 0
    clock.advance(0.5)
    assert await backend.prune() == 3
    assert await backend.prune() == 0

    for gone in expiring:
        assert await backend.get(gone.id) is None
        assert await backend.history(gone.id) == []
    for job in kept:
        assert (await stored(backend, job.id)).status is not None
        assert await backend.history(job.id) != []
    listed = await backend.list_jobs(JobFilter(limit=100))
    assert {j.id for j in listed.jobs} == {j.id for j in kept}
    counts = {s.queue: dict(s.counts) for s in await backend.stats()}
    counts = {q: {st: n for st, n in c.items() if n} for q, c in counts.items()}
    assert counts == {
        "default": {State.SUCCEEDED: 2, State.QUEUED: 1},
        "slow": {State.RUNNING: 1},
    }


async def test_prune_works_in_bounded_batches(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    for _ in range(5):
        await finish_one(backend, make(result_ttl=0))
    clock.advance(0.001)
    assert [await backend.prune(limit=2) for _ in range(4)] == [2, 2, 1, 0]


async def test_a_pruned_jobs_idempotency_key_names_a_new_job(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    first = await finish_one(backend, make(result_ttl=1, idempotency_key="k", fingerprint="f"))
    clock.advance(2)
    assert await backend.prune() == 1
    again = await submit_one(backend, make(idempotency_key="k", fingerprint="f"))
    assert again.id != first.id
    assert again.status is State.QUEUED


async def finish_all(backend: Backend, jobs: list[NewJob], how: str = "complete") -> list[str]:
    return [(await finish_one(backend, job, how)).id for job in jobs]


async def remaining(backend: Backend) -> set[str]:
    return {j.id for j in (await backend.list_jobs(JobFilter(limit=1000))).jobs}


async def test_the_policy_keeps_each_outcome_its_own_age(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    policy = RetentionPolicy(Retention(succeeded=10, failed=100, cancelled=None), max_finished=None)
    ok = await finish_all(backend, [make(), make()])
    failed = await finish_all(backend, [make()], "fail")
    cancelled = await finish_all(backend, [make()], "cancel")
    running = await submit_one(backend, make(queue="slow"))
    await backend.claim("w1", {"slow": 1}, 1, LEASE)
    queued = await submit_one(backend, make())
    scheduled = await submit_one(backend, make(delay=10_000))
    alive = {running.id, queued.id, scheduled.id}

    clock.advance(9.5)
    assert await backend.prune(policy=policy) == 0
    assert await backend.prune() == 0  # without a policy, jobs without a result_ttl stay
    clock.advance(0.5)
    assert await backend.prune(policy=policy) == 2
    assert await remaining(backend) == {*failed, *cancelled} | alive
    clock.advance(90)
    assert await backend.prune(policy=policy) == 1
    clock.advance(1e6)
    assert await backend.prune(policy=policy) == 0
    assert await remaining(backend) == {*cancelled} | alive
    for job_id in ok + failed:
        assert await backend.history(job_id) == []


async def test_a_tasks_own_retention_and_result_ttl_win_over_the_apps(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    policy = RetentionPolicy(
        Retention(succeeded=10),
        tasks={"tasks.slow": Retention(succeeded=1000), "tasks.fast": Retention(succeeded=1)},
        max_finished=None,
    )
    app_default = await finish_all(backend, [make()])
    slow = await finish_all(backend, [make(task="tasks.slow")])
    fast = await finish_all(backend, [make(task="tasks.fast")])
    own_ttl = await finish_all(backend, [make(result_ttl=50)])  # result_ttl: not aged by outcome
    clock.advance(2)
    assert await backend.prune(policy=policy) == 1
    assert await remaining(backend) == {*app_default, *slow, *own_ttl}
    assert await backend.get(fast[0]) is None
    clock.advance(10)
    assert await backend.prune(policy=policy) == 1
    assert await remaining(backend) == {*slow, *own_ttl}
    clock.advance(40)
    assert await backend.prune(policy=policy) == 1
    assert await remaining(backend) == {*slow}
    clock.advance(1000)
    assert await backend.prune(policy=policy) == 1


async def test_the_count_cap_prunes_the_oldest_ended_jobs_of_each_queue(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    policy = RetentionPolicy(Retention(None, None, None), max_finished=3)
    done = []
    for i in range(6):
        done += await finish_all(backend, [make()], ("complete", "fail", "cancel")[i % 3])
        clock.advance(1)
    other = await finish_all(backend, [make(queue="other") for _ in range(3)])
    with_ttl = await finish_all(backend, [make(result_ttl=1e6)])  # counted like any other
    queued = [(await submit_one(backend, make())).id for _ in range(5)]  # never counted
    running = await submit_one(backend, make(queue="other"))
    await backend.claim("w1", {"other": 1}, 1, LEASE)

    assert await backend.prune(limit=2, policy=policy) == 2
    assert await backend.prune(limit=500, policy=policy) == 2
    assert await backend.prune(policy=policy) == 0
    kept = {*done[4:], *with_ttl, *other, *queued, running.id}
    assert await remaining(backend) == kept
    counts = {s.queue: dict(s.counts) for s in await backend.stats()}
    assert counts["default"][State.SUCCEEDED] == 1
    assert counts["default"][State.FAILED] == 1
    assert counts["default"][State.CANCELLED] == 1
    assert counts["default"][State.QUEUED] == 5


async def test_workflow_and_group_members_are_pruned_like_any_job(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    # As before retention by outcome: a member's own end and retention decide, not its
    # workflow's (a running or waiting member is never pruned; an ended one is when due).
    policy = RetentionPolicy(Retention(succeeded=10), max_finished=None)
    member = {"workflow": {"id": "wf1", "join": "g", "member": 0}}
    ended = await finish_all(backend, [make(meta=member), make(meta={"workflow": {"id": "wf1"}})])
    waiting = await submit_one(backend, make(meta=member))
    clock.advance(10)
    assert await backend.prune(policy=policy) == 2
    assert await remaining(backend) == {waiting.id}
    assert all([await backend.get(job_id) is None for job_id in ended])
