"""The backend contract: one suite, run unchanged against every backend kind in conftest.

Time only moves through the manual clock, so leases, delays and windows are exact. The few
tests of ``wait_for_work`` use small real timeouts with generous bounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from offload.backends.base import IDEMPOTENCY_WINDOW, Backend
from offload.core.clock import ManualClock
from offload.core.job import JobFilter, JobRecord, Lease, NewJob, Transition, WorkerInfo
from offload.core.limits import Limits
from offload.core.states import TRANSITIONS, Reason, State
from offload.errors import IdempotencyConflict, InvalidTransition, JobNotFound, LeaseLost

LEASE = 30.0
ALL = {"default": 100}

MakeJob = Callable[..., NewJob]

#: JSON that tends to break naive storage: unicode, nesting, awkward floats, big ints.
PAYLOAD: dict[str, Any] = {
    "text": 'héllo wörld ✓ 日本語 😀 "quoted" \\ back\nslash',
    "nested": {"list": [1, 2.5, None, True, False, "x"], "deep": {"a": {"b": {"c": []}}}},
    "floats": [0.1, 1 / 3, 1e-300, 1.7976931348623157e308, -2.5, 0.0],
    "ints": [0, -1, 2**53, -(2**53)],
    "empty": {"list": [], "dict": {}, "str": ""},
}


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


# -- submit ------------------------------------------------------------------------------------


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


# -- claim -------------------------------------------------------------------------------------


async def test_claim_order_is_priority_then_due_time_then_id(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    t0 = clock.now()
    # Submitted out of order on purpose: only priority, due time and id may decide.
    await backend.submit(
        [
            make(id="c" * 32, priority=0),  # same due time as a: the id decides
            make(id="a" * 32, priority=0),
            make(id="b" * 32, priority=5),
            make(id="d" * 32, priority=0, run_at=t0 - 10),  # due earlier
            make(id="0" * 32, priority=5, delay=5),  # high priority, due later
            make(id="e" * 32, priority=-1),
        ]
    )
    clock.advance(5)
    order = [(await claim_one(backend))[0].id[0] for _ in range(6)]
    assert order == ["b", "0", "d", "a", "c", "e"]
    assert await nothing_claimable(backend)


async def test_claim_respects_per_queue_caps_and_the_total_limit(
    backend: Backend, make: MakeJob
) -> None:
    await backend.submit([make(queue=q) for q in ("a", "b", "c") for _ in range(5)])

    first = await backend.claim("w1", {"a": 2, "b": 1}, 10, LEASE)
    assert sorted(r.queue for r in first) == ["a", "a", "b"]

    second = await backend.claim("w1", {"a": 5, "b": 5, "c": 0}, 4, LEASE)
    assert len(second) == 4
    assert {r.queue for r in second} <= {"a", "b"}

    assert await backend.claim("w1", {"c": 0}, 10, LEASE) == []
    assert await backend.claim("w1", {"nope": 3}, 10, LEASE) == []
    assert await backend.claim("w1", {"c": 3}, 0, LEASE) == []
    rest = await backend.claim("w1", {"a": 10, "b": 10, "c": 10}, 100, LEASE)
    assert len(rest) == 15 - 3 - 4
    assert await nothing_claimable(backend, {"a": 9, "b": 9, "c": 9})


async def test_claim_starts_a_lease(backend: Backend, clock: ManualClock, make: MakeJob) -> None:
    submitted = await submit_one(backend, make())
    clock.advance(3)
    record, _ = await claim_one(backend, worker="worker-1", lease=12.5)
    assert record.id == submitted.id
    assert record.status is State.RUNNING
    assert record.attempts == 1
    assert record.token > submitted.token
    assert record.worker_id == "worker-1"
    assert record.lease_until == pytest.approx(clock.now() + 12.5)
    assert record.started_at == pytest.approx(clock.now())
    assert await backend.get(record.id) == record


async def test_every_claim_gets_a_higher_token(backend: Backend, make: MakeJob) -> None:
    job = await submit_one(backend, make())
    tokens = [job.token]
    for _ in range(3):
        _, lease = await claim_one(backend)
        tokens.append(lease.token)
        await backend.fail(lease, {"type": "E", "message": "again"}, retry_in=0)
    assert tokens == sorted(set(tokens))


async def test_concurrent_claims_never_return_the_same_job(backend: Backend, make: MakeJob) -> None:
    ids = {r.id for r in await backend.submit([make() for _ in range(20)])}
    batches = await asyncio.gather(
        *(backend.claim(f"w{n}", ALL, 3, LEASE) for n in range(10)),
    )
    claimed = [r.id for batch in batches for r in batch]
    assert len(claimed) == len(set(claimed)) == 20
    assert set(claimed) == ids
    workers = {r.id: r.worker_id for batch in batches for r in batch}
    for job_id in ids:
        assert (await stored(backend, job_id)).worker_id == workers[job_id]


# -- renew -------------------------------------------------------------------------------------


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


# -- operations under a lease ------------------------------------------------------------------

LeasedOp = Callable[[Backend, Lease], Awaitable[object]]

LEASED_OPS: dict[str, LeasedOp] = {
    "complete": lambda b, lease: b.complete(lease, {"late": True}),
    "fail": lambda b, lease: b.fail(lease, {"type": "E", "message": "late"}),
    "fail_retry": lambda b, lease: b.fail(lease, {"type": "E", "message": "late"}, retry_in=5),
    "progress": lambda b, lease: b.progress(lease, 0.5, "late"),
    "mark_cancelled": lambda b, lease: b.mark_cancelled(lease),
    "release": lambda b, lease: b.release(lease),
}


@pytest.mark.parametrize("op", list(LEASED_OPS))
@pytest.mark.parametrize("staleness", ["wrong_token", "expired", "reclaimed", "finished"])
async def test_stale_lease_raises_lease_lost_and_changes_nothing(
    backend: Backend, clock: ManualClock, make: MakeJob, op: str, staleness: str
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    if staleness == "wrong_token":
        lease = Lease(record.id, record.token + 1)
    elif staleness == "expired":
        clock.advance(LEASE)
    elif staleness == "reclaimed":
        clock.advance(LEASE)
        await backend.reap()
        await claim_one(backend, worker="w2", idle=True)
    else:
        await backend.complete(lease, "first")
    before = await stored(backend, record.id)
    history_before = await backend.history(record.id)

    with pytest.raises(LeaseLost):
        await LEASED_OPS[op](backend, lease)

    assert await backend.get(record.id) == before
    assert await backend.history(record.id) == history_before


async def test_progress_is_recorded(backend: Backend, make: MakeJob) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    await backend.progress(lease, 0.25, "a quarter ✓")
    now = await stored(backend, record.id)
    assert (now.progress, now.progress_message) == (0.25, "a quarter ✓")
    assert now.status is State.RUNNING
    await backend.progress(lease, None, None)
    now = await stored(backend, record.id)
    assert (now.progress, now.progress_message) == (None, None)


async def test_complete_stores_the_result(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await submit_one(backend, make())
    _, lease = await claim_one(backend)
    clock.advance(2)
    await backend.complete(lease, {"pages": 3})
    done = await stored(backend, lease.job_id)
    assert done.status is State.SUCCEEDED
    assert done.result == {"pages": 3}
    assert done.finished_at == pytest.approx(clock.now())


# -- a workflow step's hand-off: its success and its successors in one operation ---------------


async def test_complete_then_stores_the_success_and_the_successors_together(
    backend: Backend, make: MakeJob
) -> None:
    await submit_one(backend, make())
    _, lease = await claim_one(backend)
    b, c = make(queue="next"), make(queue="next", priority=3)
    await backend.complete(lease, 1, then=[b, c])
    assert (await stored(backend, lease.job_id)).status is State.SUCCEEDED
    for job in (b, c):
        record = await stored(backend, job.id)
        assert (record.status, record.queue, record.priority) == (
            State.QUEUED, "next", job.priority
        )  # fmt: skip
        assert [t.reason for t in await backend.history(job.id)] == [Reason.SUBMITTED]
    claimed = await backend.claim("w2", {"next": 10}, 10, LEASE)
    assert [r.id for r in claimed] == [c.id, b.id]


async def test_a_step_whose_worker_dies_after_the_hand_off_never_runs_again(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    """Killed between "step done" and "next step claimed": the step is done for good."""
    step = await submit_one(backend, make())
    _, lease = await claim_one(backend, worker="w1")
    nxt = make()
    await backend.complete(lease, "a", then=[nxt])
    # w1 dies here; the next step has not been claimed yet.
    for _ in range(4):
        clock.advance(LEASE)
        await backend.reap()
    [claimed] = await backend.claim("w2", ALL, 10, LEASE)
    assert claimed.id == nxt.id
    done = await stored(backend, step.id)
    assert (done.status, done.attempts, done.result) == (State.SUCCEEDED, 1, "a")


@pytest.mark.parametrize("staleness", ["expired", "reclaimed"])
async def test_complete_then_under_a_lost_lease_stores_nothing(
    backend: Backend, clock: ManualClock, make: MakeJob, staleness: str
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    clock.advance(LEASE)
    if staleness == "reclaimed":
        await backend.reap()
        await claim_one(backend, worker="w2", idle=True)
    before = await stored(backend, record.id)
    nxt = make(idempotency_key="next-step", fingerprint="f")
    with pytest.raises(LeaseLost):
        await backend.complete(lease, "late", then=[nxt])
    assert await backend.get(nxt.id) is None
    assert await backend.get(record.id) == before
    again = await submit_one(backend, make(idempotency_key="next-step", fingerprint="other"))
    assert again.id != nxt.id  # the key was not taken either


async def test_complete_then_leaves_an_existing_successor_as_it_is(
    backend: Backend, make: MakeJob
) -> None:
    """A step that ran twice (its lease was lost once) hands off to the job stored first."""
    await submit_one(backend, make(queue="a"))
    nxt = make(queue="b", idempotency_key="wf:x:1", fingerprint="f")
    await submit_one(backend, nxt)
    [running] = await backend.claim("w2", {"b": 1}, 1, LEASE)
    _, lease = await claim_one(backend, queue="a")
    await backend.complete(lease, "again", then=[nxt])
    assert await stored(backend, nxt.id) == running
    assert len(await backend.history(nxt.id)) == 2  # submitted, claimed


async def test_complete_then_with_a_successor_that_cannot_be_stored_writes_nothing(
    backend: Backend, make: MakeJob
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    before = await stored(backend, record.id)
    fine, bad = make(), make(delay=float("nan"))
    with pytest.raises(ValueError, match="delay"):
        await backend.complete(lease, "x", then=[fine, bad])
    assert await backend.get(fine.id) is None
    assert await backend.get(bad.id) is None
    assert await backend.get(record.id) == before


async def test_complete_then_with_a_conflicting_key_writes_nothing(
    backend: Backend, make: MakeJob
) -> None:
    other = await submit_one(backend, make(queue="o", idempotency_key="k", fingerprint="one"))
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    before = await stored(backend, record.id)
    fresh, clash = make(), make(idempotency_key="k", fingerprint="two")
    with pytest.raises(IdempotencyConflict):
        await backend.complete(lease, "x", then=[fresh, clash])
    assert await backend.get(fresh.id) is None
    assert await backend.get(clash.id) is None
    assert await backend.get(record.id) == before  # still running under its lease
    await backend.complete(lease, "x")
    assert (await stored(backend, other.id)).status is State.QUEUED


# -- fail and retry ----------------------------------------------------------------------------


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


# -- release -----------------------------------------------------------------------------------


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


# -- cancel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 60.0], ids=["queued", "scheduled"])
async def test_cancel_of_a_pending_job_cancels_it(
    backend: Backend, clock: ManualClock, make: MakeJob, delay: float
) -> None:
    record = await submit_one(backend, make(delay=delay))
    cancelled = await backend.cancel(record.id)
    assert cancelled.status is State.CANCELLED
    assert await backend.get(record.id) == cancelled
    assert (await backend.history(record.id))[-1].reason is Reason.CANCELLED
    clock.advance(delay + 1)
    assert await nothing_claimable(backend)


async def test_cancel_of_a_running_job_requests_it(backend: Backend, make: MakeJob) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    requested = await backend.cancel(record.id)
    assert requested.status is State.RUNNING
    assert requested.cancel_requested
    assert (await stored(backend, record.id)).cancel_requested
    assert (await backend.renew("w1", [lease], LEASE)).cancel_requested == {record.id}
    assert (await backend.cancel(record.id)).status is State.RUNNING  # asking twice is fine

    await backend.mark_cancelled(lease, {"type": "Cancelled", "message": "stopped"})
    cancelled = await stored(backend, lease.job_id)
    assert cancelled.status is State.CANCELLED
    assert cancelled.error == {"type": "Cancelled", "message": "stopped"}
    assert (await backend.history(record.id))[-1].reason is Reason.CANCELLED


@pytest.mark.parametrize("end", [State.SUCCEEDED, State.FAILED, State.CANCELLED])
async def test_cancel_of_a_finished_job_is_an_invalid_transition(
    backend: Backend, make: MakeJob, end: State
) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    if end is State.SUCCEEDED:
        await backend.complete(lease, None)
    elif end is State.FAILED:
        await backend.fail(lease, {"type": "E", "message": "x"})
    else:
        await backend.mark_cancelled(lease)
    before = await stored(backend, record.id)
    with pytest.raises(InvalidTransition):
        await backend.cancel(record.id)
    assert await backend.get(record.id) == before


async def test_unknown_job(backend: Backend) -> None:
    with pytest.raises(JobNotFound):
        await backend.cancel("f" * 32)
    assert await backend.get("f" * 32) is None
    assert await backend.history("f" * 32) == []


# -- reap --------------------------------------------------------------------------------------


async def test_reap_requeues_an_expired_lease(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await backend.submit([make(), make()])
    expired, _ = await claim_one(backend, lease=10)
    alive, _ = await claim_one(backend, lease=100)
    clock.advance(9)
    assert await backend.reap() == 0
    clock.advance(1)
    assert await backend.reap() == 1
    requeued = await stored(backend, expired.id)
    assert (requeued.status, requeued.losses, requeued.attempts) == (State.QUEUED, 1, 1)
    last = (await backend.history(expired.id))[-1]
    assert (last.from_status, last.to_status, last.reason) == (
        State.RUNNING,
        State.QUEUED,
        Reason.LEASE_EXPIRED,
    )
    assert (await stored(backend, alive.id)).status is State.RUNNING
    assert await backend.reap() == 0


async def test_third_lost_lease_fails_the_job_as_worker_lost(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    record = await submit_one(backend, make())
    for loss in (1, 2):
        await claim_one(backend, idle=True)
        clock.advance(LEASE)
        assert await backend.reap() == 1
        assert (await stored(backend, record.id)).losses == loss
    await claim_one(backend, idle=True)
    clock.advance(LEASE)
    assert await backend.reap() == 1
    failed = await stored(backend, record.id)
    assert failed.status is State.FAILED
    assert failed.losses == 3
    assert failed.error is not None
    assert failed.error["type"] == "WorkerLost"
    reasons = [e.reason for e in await backend.history(record.id)]
    assert reasons == [
        Reason.SUBMITTED,
        *[Reason.CLAIMED, Reason.LEASE_EXPIRED] * 2,
        Reason.CLAIMED,
        Reason.WORKER_LOST,
    ]
    assert await nothing_claimable(backend)


async def test_reaped_job_fences_out_its_old_owner(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await submit_one(backend, make())
    record, old = await claim_one(backend, worker="old")
    clock.advance(LEASE)
    await backend.reap()
    with pytest.raises(LeaseLost):
        await backend.complete(old, "stale")
    again, new = await claim_one(backend, worker="new", idle=True)
    assert again.token > record.token
    with pytest.raises(LeaseLost):
        await backend.complete(old, "stale")
    await backend.complete(new, "fresh")
    done = await stored(backend, new.job_id)
    assert (done.result, done.worker_id) == ("fresh", "new")


async def test_reclaim_dead_reaps_the_jobs_of_workers_whose_heartbeat_lapsed(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    """Before its lease ends, a job of a worker with no live heartbeat goes back to the queue
    (and its old owner is fenced out); a live worker's job, and a job claimed less than
    ``grace`` ago, stay running."""
    await backend.submit([make(), make(), make()])
    await backend.heartbeat(worker_info("dead"), ttl=5)
    await backend.heartbeat(worker_info("alive"), ttl=5)
    lost, old = await claim_one(backend, worker="dead", lease=100)
    kept, _ = await claim_one(backend, worker="alive", lease=100)
    clock.advance(4)
    assert await backend.reclaim_dead(grace=5) == 0  # dead's heartbeat is still live
    await backend.heartbeat(worker_info("alive"), ttl=5)
    clock.advance(2)  # dead's heartbeat lapsed 1 s ago; alive's is 2 s old
    fresh, _ = await claim_one(backend, worker="dead", lease=100)
    assert await backend.reclaim_dead(grace=5) == 1
    requeued = await stored(backend, lost.id)
    assert (requeued.status, requeued.losses) == (State.QUEUED, 1)
    assert (await backend.history(lost.id))[-1].reason is Reason.LEASE_EXPIRED
    assert (await stored(backend, kept.id)).status is State.RUNNING
    assert (await stored(backend, fresh.id)).status is State.RUNNING  # claimed too recently
    with pytest.raises(LeaseLost):
        await backend.complete(old, "stale")


async def lose_once(backend: Backend, clock: ManualClock, job: NewJob) -> JobRecord:
    """Submit ``job`` (into an empty backend), claim it and let its lease expire."""
    await submit_one(backend, job)
    record, _ = await claim_one(backend, queue=job.queue)
    clock.advance(LEASE)
    assert await backend.reap() == 1
    suspect = await stored(backend, record.id)
    assert (suspect.status, suspect.losses) == (State.QUEUED, 1)
    return suspect


async def test_a_suspect_is_claimed_only_by_an_idle_worker_and_alone(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    suspect = await lose_once(backend, clock, make(priority=9))
    innocent = await backend.submit([make(), make()])

    busy = await backend.claim("busy", ALL, 10, LEASE)
    assert {r.id for r in busy} == {r.id for r in innocent}
    await backend.submit([make(), make()])
    alone = await backend.claim("idle", ALL, 10, LEASE, idle=True)
    assert [r.id for r in alone] == [suspect.id]
    assert (alone[0].attempts, alone[0].losses) == (2, 1)


async def test_an_idle_claim_takes_innocent_jobs_first_in_order(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    suspect = await lose_once(backend, clock, make(priority=0))
    first, second = await backend.submit([make(priority=5), make(priority=5)])
    claimed = await backend.claim("idle", ALL, 10, LEASE, idle=True)
    assert [r.id for r in claimed] == [first.id, second.id]  # no suspect among innocents
    assert (await stored(backend, suspect.id)).status is State.QUEUED
    assert [r.id for r in await backend.claim("idle", ALL, 10, LEASE, idle=True)] == [suspect.id]


async def test_an_idle_claim_skips_a_suspect_behind_innocent_jobs_within_a_queue_cap(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    suspect = await lose_once(backend, clock, make(priority=3))
    high, low = await backend.submit([make(priority=5), make(priority=1)])
    claimed = await backend.claim("idle", {"default": 2}, 10, LEASE, idle=True)
    assert [r.id for r in claimed] == [high.id, low.id]
    assert (await stored(backend, suspect.id)).status is State.QUEUED


# -- idempotency -------------------------------------------------------------------------------


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


# -- history -----------------------------------------------------------------------------------


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


# -- reads: list, stats ------------------------------------------------------------------------


async def test_list_jobs_filters(backend: Backend, make: MakeJob) -> None:
    jobs = {
        "mail-a": make(task="mail", queue="io", tenant="a"),
        "mail-b": make(task="mail", queue="io", tenant="b"),
        "pdf-a": make(task="pdf", queue="cpu", tenant="a"),
        "pdf-b": make(task="pdf", queue="cpu", tenant="b"),
    }
    await backend.submit(list(jobs.values()))
    await claim_one(backend, queue="cpu")  # one pdf job runs

    async def listed(**flt: Any) -> set[str]:
        page = await backend.list_jobs(JobFilter(**flt))
        names = {j.id: name for name, j in jobs.items()}
        return {names[j.id] for j in page.jobs}

    assert await listed() == set(jobs)
    assert await listed(task="mail") == {"mail-a", "mail-b"}
    assert await listed(queue="cpu") == {"pdf-a", "pdf-b"}
    assert await listed(tenant="a") == {"mail-a", "pdf-a"}
    assert await listed(task="pdf", tenant="b") == {"pdf-b"}
    assert len(await listed(status=State.RUNNING, queue="cpu")) == 1
    assert len(await listed(status=State.QUEUED)) == 3
    assert await listed(status=State.FAILED) == set()
    assert await listed(task="nope") == set()


async def test_list_jobs_is_newest_first_and_pages_visit_every_job_once(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    submitted: list[str] = []
    for batch in range(6):  # several jobs share each creation time
        records = await backend.submit([make(queue="q" if n % 2 else "p") for n in range(4)])
        submitted.extend(r.id for r in records)
        clock.advance(1 + batch)
    submitted.extend(r.id for r in await backend.submit([make(queue="q")]))
    newest_first = await backend.list_jobs(JobFilter(limit=100))
    assert newest_first.next_cursor is None
    times = [j.created_at for j in newest_first.jobs]
    assert times == sorted(times, reverse=True)
    assert {j.id for j in newest_first.jobs} == set(submitted)

    for flt in (JobFilter(limit=5), JobFilter(limit=3, queue="q"), JobFilter(limit=1)):
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await backend.list_jobs(
                JobFilter(queue=flt.queue, limit=flt.limit, cursor=cursor)
            )
            assert len(page.jobs) <= flt.limit
            seen.extend(j.id for j in page.jobs)
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = [j.id for j in newest_first.jobs if flt.queue in (None, j.queue)]
        assert seen == expected


async def test_stats_count_jobs_per_queue_and_state(backend: Backend, make: MakeJob) -> None:
    await backend.submit([make(queue="a"), make(queue="a"), make(queue="a", delay=60)])
    await backend.submit([make(queue="b") for _ in range(4)])
    await claim_one(backend, queue="b")  # stays running
    _, done = await claim_one(backend, queue="b")
    _, failed = await claim_one(backend, queue="b")
    await backend.complete(done, None)
    await backend.fail(failed, {"type": "E", "message": "x"})
    stats = {s.queue: s for s in await backend.stats()}
    a, b = stats["a"], stats["b"]
    assert (a.count(State.QUEUED), a.count(State.SCHEDULED), a.count(State.RUNNING)) == (2, 1, 0)
    assert [b.count(s) for s in State] == [
        {State.QUEUED: 1, State.RUNNING: 1, State.SUCCEEDED: 1, State.FAILED: 1}.get(s, 0)
        for s in State
    ]
    assert set(stats) == {"a", "b"}


# -- values ------------------------------------------------------------------------------------


async def test_json_values_round_trip(backend: Backend, make: MakeJob) -> None:
    new = make(args=[PAYLOAD, "ü"], kwargs={"payload": PAYLOAD}, meta={"m": PAYLOAD})
    await submit_one(backend, new)
    first, lease = await claim_one(backend)
    assert (first.args, first.kwargs, first.meta) == (
        [PAYLOAD, "ü"],
        {"payload": PAYLOAD},
        {"m": PAYLOAD},
    )
    await backend.progress(lease, 1 / 3, PAYLOAD["text"])
    assert (await stored(backend, new.id)).progress_message == PAYLOAD["text"]
    await backend.complete(lease, PAYLOAD)
    done = await stored(backend, new.id)
    assert done.result == PAYLOAD
    assert done.progress == pytest.approx(1 / 3)

    await submit_one(backend, make())
    second, lease = await claim_one(backend)
    await backend.fail(lease, {"type": "E", "message": PAYLOAD["text"], "details": PAYLOAD})
    failed = await stored(backend, second.id)
    assert failed.error == {"type": "E", "message": PAYLOAD["text"], "details": PAYLOAD}


@pytest.mark.parametrize("result", [None, 0, "", [], {}, 1.5, "text", [1, [2, [3]]]])
async def test_simple_results_round_trip(backend: Backend, make: MakeJob, result: Any) -> None:
    await submit_one(backend, make())
    record, lease = await claim_one(backend)
    await backend.complete(lease, result)
    assert (await stored(backend, record.id)).result == result


async def test_stored_values_do_not_alias_the_callers_objects(
    backend: Backend, make: MakeJob
) -> None:
    args: list[Any] = [{"n": 1}]
    await submit_one(backend, make(args=args))
    args[0]["n"] = 2
    record, lease = await claim_one(backend)
    assert record.args == [{"n": 1}]
    result = {"items": [1]}
    await backend.complete(lease, result)
    result["items"].append(2)
    assert (await stored(backend, record.id)).result == {"items": [1]}


# -- wait_for_work -----------------------------------------------------------------------------


async def test_wait_for_work_wakes_when_a_job_is_submitted(backend: Backend, make: MakeJob) -> None:
    waiting = asyncio.create_task(backend.wait_for_work(["default"], timeout=10.0))
    for _ in range(5):
        await asyncio.sleep(0)  # let the waiter start waiting
    started = time.monotonic()
    await submit_one(backend, make())
    await asyncio.wait_for(waiting, timeout=8.0)
    assert time.monotonic() - started < 8.0


async def test_wait_for_work_returns_at_once_when_work_is_queued(
    backend: Backend, make: MakeJob
) -> None:
    await submit_one(backend, make())
    started = time.monotonic()
    await backend.wait_for_work(["default"], timeout=10.0)
    assert time.monotonic() - started < 8.0


async def test_wait_for_work_times_out_when_nothing_comes(backend: Backend) -> None:
    started = time.monotonic()
    await backend.wait_for_work(["default"], timeout=0.2)
    elapsed = time.monotonic() - started
    assert 0.1 <= elapsed < 10.0


async def test_wait_for_work_is_not_woken_by_a_suspect(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await lose_once(backend, clock, make())
    started = time.monotonic()
    await backend.wait_for_work(["default"], timeout=0.2)
    assert 0.1 <= time.monotonic() - started < 10.0


# -- a requested cancel is honoured when the job would otherwise run again ----------------------
REQUEUE_MOVES: dict[str, Callable[[Backend, Lease, ManualClock], Awaitable[Any]]] = {
    "retry now": lambda b, lease, c: b.fail(lease, {"message": "x"}, retry_in=0),
    "retry later": lambda b, lease, c: b.fail(lease, {"message": "x"}, retry_in=5),
    "release": lambda b, lease, c: b.release(lease),
}


@pytest.mark.parametrize("move", list(REQUEUE_MOVES))
async def test_a_cancel_requested_job_is_cancelled_instead_of_requeued(
    backend: Backend, clock: ManualClock, make: MakeJob, move: str
) -> None:
    await backend.submit([make()])
    record, lease = await claim_one(backend)
    await backend.cancel(record.id)
    await REQUEUE_MOVES[move](backend, lease, clock)
    job = await stored(backend, record.id)
    assert job.status is State.CANCELLED
    last = (await backend.history(record.id))[-1]
    assert (last.reason, last.from_status, last.worker_id) == (
        Reason.CANCELLED,
        State.RUNNING,
        record.worker_id,
    )
    assert await backend.claim("w", ALL, 10, LEASE, idle=True) == []


async def test_a_cancel_requested_job_is_not_rerun_after_its_worker_dies(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    await backend.submit([make()])
    record, _ = await claim_one(backend)
    await backend.cancel(record.id)
    clock.advance(LEASE)
    assert await backend.reap() == 1
    job = await stored(backend, record.id)
    assert (job.status, job.losses) == (State.CANCELLED, 1)
    assert (await backend.history(record.id))[-1].reason is Reason.CANCELLED


async def test_a_busy_worker_takes_a_suspect_that_waited_a_lease_alone(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    suspect = await lose_once(backend, clock, make())
    assert await backend.claim("busy", ALL, 10, LEASE) == []  # too fresh for a busy worker
    clock.advance(LEASE)
    await backend.submit([make(), make()])
    assert [r.id for r in await backend.claim("busy", ALL, 10, LEASE)] == [suspect.id]


# -- live workers --------------------------------------------------------------------------------
def worker_info(worker_id: str, started_at: float = 0.0, running: int = 0) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id, name="w", host="h", pid=1, queues=["default", "pdf"], concurrency=4,
        started_at=started_at, last_seen=0.0, running=running, processed=0,
    )  # fmt: skip


async def test_heartbeats_list_live_workers_until_they_expire_or_leave(
    backend: Backend, clock: ManualClock
) -> None:
    assert await backend.workers() == []
    await backend.heartbeat(worker_info("a", started_at=1.0), ttl=10)
    await backend.heartbeat(worker_info("b", started_at=2.0), ttl=30)
    clock.advance(5)
    await backend.heartbeat(worker_info("a", started_at=1.0, running=3), ttl=10)
    live = await backend.workers()
    assert [w.id for w in live] == ["a", "b"]
    assert live[0].running == 3
    assert live[0].last_seen == clock.now()
    assert live[0].queues == ["default", "pdf"]
    clock.advance(11)  # a's last heartbeat is 11 s old, b's 16 s of 30
    assert [w.id for w in await backend.workers()] == ["b"]
    await backend.heartbeat(worker_info("b", started_at=2.0), ttl=0)  # a clean stop
    assert await backend.workers() == []


# -- retention ---------------------------------------------------------------------------------


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
    expiring = [await finish_one(backend, make(result_ttl=10), how)
                for how in ("complete", "fail", "cancel")]  # fmt: skip
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


# -- global limits: concurrency caps and rate limits -------------------------------------------


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
