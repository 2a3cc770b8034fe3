"""Maintenance racing with work: the reaper against a job's owner, two claimers on one queue.

Both run on SQLite and on Redis (``faults``), with the reaper and claimers as real processes.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter

import pytest
from faultkit import HERE, LEASE, Faults, pid_of, wait_until

import offload
from offload import State, Transition
from offload.backends.base import Backend
from offload.core.job import JobRecord, Lease
from offload.errors import LeaseLost

pytestmark = pytest.mark.slow


def reasons(history: list[Transition]) -> list[str]:
    return [t.reason.value for t in history]


# -- 1. the reaper and the owner on the same job -------------------------------------------------
RACE_JOBS = 200
#: The owner writes each outcome this close to the lease's deadline, before or after it.
JITTER = 0.15


def test_owner_and_reaper_race_on_every_lease_deadline(
    faults: Faults, chaos: random.Random
) -> None:
    """The test process claims 200 jobs as their owner and never renews them; at random moments
    (seeded) within 0.15 s either side of each lease's deadline it completes the job, or fails
    it with a retry. A worker process sweeps for expired leases every 50 ms. Both writes are
    conditional, so for every job exactly one side wins: the owner's outcome is accepted and
    the job is never reaped, or the owner gets LeaseLost and the reaper's ``lease_expired`` is
    in the history (then a worker runs the job again)."""
    app = faults.app
    spec = app.registry.get("quick")
    race = offload.SubmitOptions(queue="race")
    new = [app.prepare(spec, [i], {}, race) for i in range(RACE_JOBS)]
    ids = [job.id for job in app.run_sync(app.asubmit_many(new))]
    faults.acknowledge(ids)
    # The reaper serves another queue: it sweeps leases of every queue but runs nothing here.
    reaper = faults.start("reaper", "--queues", "default", env={"OFFLOAD_REAP_INTERVAL": "0.05"})

    owner = f"owner-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    claimed_at = time.time()
    jobs = faults.call(lambda b: b.claim(owner, {"race": RACE_JOBS}, RACE_JOBS, LEASE))
    assert len(jobs) == RACE_JOBS
    faults.note_fault("owner", {os.getpid()}, claimed_at)  # it renews nothing, on purpose
    plan = {job.id: (chaos.uniform(-JITTER, JITTER), chaos.random() < 0.7) for job in jobs}
    outcomes = faults.call(lambda b: _race(b, jobs, plan))

    # Run what the owner lost, on a worker of queue "race".
    faults.start("rerun", "--queues", "race")
    faults.wait_all_ended(RACE_JOBS, timeout=20)
    histories = faults.histories(ids)
    deadline = {job.id: job.lease_until or 0.0 for job in jobs}
    for job_id, outcome in outcomes.items():
        history = histories[job_id]
        said = reasons(history)
        assert pid_of(history[1].worker_id) == os.getpid()
        if outcome == "lost":  # the reaper, or the deadline, came first
            assert said[:3] == ["submitted", "claimed", "lease_expired"], (job_id, said)
            assert history[2].at >= deadline[job_id]
            assert said[-1] == "succeeded"  # run again, by the worker
            continue
        # The owner's write was accepted: before the deadline, and the reaper never moved it.
        assert said[:3] == ["submitted", "claimed", outcome], (job_id, said)
        assert history[2].token == history[1].token
        assert history[2].at < deadline[job_id], f"job {job_id}: accepted after its deadline"
        assert "lease_expired" not in said
        assert said[-1] == "succeeded"
    won = Counter(outcomes.values())
    faults.measured.update(owner_won=won["succeeded"] + won["retry"], reaper_won=won["lost"])
    # The race was run: each side won some.
    assert won["lost"] >= RACE_JOBS // 10, won
    assert won["succeeded"] + won["retry"] >= RACE_JOBS // 10, won
    assert "Traceback" not in reaper.text()


async def _race(
    backend: Backend, jobs: list[JobRecord], plan: dict[str, tuple[float, bool]]
) -> dict[str, str]:
    """Write each job's outcome at its deadline + its offset (by the backend's clock); returns
    ``succeeded``, ``retry`` (the owner's write was accepted) or ``lost`` per job."""

    loop = asyncio.get_running_loop()
    now, then = await backend.now(), loop.time()  # one reading: the backend's clock in loop time

    async def one(job: JobRecord) -> str:
        offset, complete = plan[job.id]
        assert job.lease_until is not None
        await asyncio.sleep(max(0.0, then + job.lease_until + offset - now - loop.time()))
        lease = Lease(job.id, job.token)
        try:
            if complete:
                await backend.complete(lease, {"by": "owner"})
                return "succeeded"
            await backend.fail(lease, {"type": "Flaky", "message": "again"}, retry_in=0)
            return "retry"
        except LeaseLost:
            return "lost"

    results = await asyncio.gather(*(one(job) for job in jobs))
    return {job.id: result for job, result in zip(jobs, results, strict=True)}


# -- 2. two claimers on 1,000 jobs ---------------------------------------------------------------
CLAIM_JOBS = 1000


def test_two_claimer_processes_never_claim_the_same_job(faults: Faults) -> None:
    """Two processes claim batches of 1 to 32 jobs from the same 1,000, as fast as they can,
    completing each at once (``claimer.py``). Every job is claimed exactly once, by one of them,
    and its history is submitted, claimed, succeeded."""
    ids = faults.submit_many("quick", [[i] for i in range(CLAIM_JOBS)])
    go = faults.tmp / "go"
    outs = {name: faults.tmp / f"{name}.txt" for name in ("c1", "c2")}
    claimers = [
        faults.spawn(name, [sys.executable, str(HERE / "claimer.py"), name, str(out), str(go)])
        for name, out in outs.items()
    ]
    for out in outs.values():  # both have opened the backend: start them together
        wait_until(out.with_suffix(".ready").exists, 20, f"{out.stem} to be ready")
    go.touch()
    for claimer in claimers:
        assert claimer.wait_exit(30) == 0, claimer.text()
    taken = {name: out.read_text().split() for name, out in outs.items()}
    assert len(taken["c1"]) + len(taken["c2"]) == CLAIM_JOBS, "a job was claimed twice"
    assert set(taken["c1"]) | set(taken["c2"]) == set(ids)
    assert not set(taken["c1"]) & set(taken["c2"])
    assert min(len(t) for t in taken.values()) >= CLAIM_JOBS // 10, "no contention: one did all"
    by_pid = {c.pid: c.name for c in claimers}
    histories = faults.histories(ids)
    for name, claimed in taken.items():
        for job_id in claimed:
            history = histories[job_id]
            assert reasons(history) == ["submitted", "claimed", "succeeded"]
            assert by_pid[pid_of(history[1].worker_id) or 0] == name
    wait_until(lambda: faults.counts() == Counter({State.SUCCEEDED: CLAIM_JOBS}), 5, "counts")
