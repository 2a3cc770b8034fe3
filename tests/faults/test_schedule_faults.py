"""Delayed jobs across worker crashes, and a worker whose clock is wrong.

Due times and leases come from the backend's clock (DESIGN.md section 6: "a job scheduled an
hour ahead never runs early or twice"). The evidence for "not early" is twofold: the claim in
the history (backend clock) is not before the job's ``run_at``, and the run in the ledger (the
real wall clock of this machine) did not start before it either.
"""

from __future__ import annotations

import random
import signal
import time

import pytest
from faultkit import Faults, Run, WorkerProcess, read_ledger

import offload
from offload import State, Transition

pytestmark = pytest.mark.slow

#: Clock noise between a worker's ledger entry and the backend's due time (one machine).
CLOCK_EPS = 0.05


def reasons(history: list[Transition]) -> list[str]:
    return [t.reason.value for t in history]


def submit_delayed(faults: Faults, delays: list[float], seconds: float = 0.0) -> dict[str, float]:
    """One ``tally`` job per delay, each running ``seconds``; returns each job's due time
    (``run_at``, backend clock)."""
    due = {}
    for i, delay in enumerate(delays):
        options = offload.SubmitOptions(delay=delay)
        job = faults.submit("tally", str(faults.ledger), i, seconds, seconds, options=options)
        assert job.status is State.SCHEDULED
        due[job.id] = job.record.run_at
    return due


def assert_never_early(faults: Faults, due: dict[str, float]) -> dict[str, list[Run]]:
    """No claim before ``run_at`` (history) and no run started before it (ledger)."""
    histories = faults.histories(list(due))
    runs: dict[str, list[Run]] = {}
    for run in read_ledger(faults.ledger):
        runs.setdefault(run.job, []).append(run)
    for job_id, run_at in due.items():
        history = histories[job_id]
        assert reasons(history)[:3] == ["submitted", "promoted", "claimed"], reasons(history)
        claims = [t for t in history if t.reason.value == "claimed"]
        assert claims[0].at >= run_at, f"job {job_id} claimed {run_at - claims[0].at:.3f}s early"
        for run in runs.get(job_id, []):
            early = run_at - run.at
            assert early <= CLOCK_EPS, f"job {job_id} started {early:.3f}s early"
    return runs


def test_delayed_jobs_run_once_and_on_time_across_worker_crashes(
    faults: Faults, chaos: random.Random
) -> None:
    """60 jobs of 0.2 s due at random times over the next 6 s (seeded), two workers. At random
    moments one worker is SIGKILLed and started again, then both are, so that jobs fall due
    while no worker runs. Every job runs after its due time, and only a job whose run a kill
    interrupted (before its outcome was recorded) runs twice."""
    workers = {name: faults.start(name, "--concurrency", "4") for name in ("a", "b")}
    due = submit_delayed(faults, [round(chaos.uniform(0.5, 6.0), 3) for _ in range(60)], 0.2)
    kills: list[float] = []
    for victims in ([chaos.choice(sorted(workers))], sorted(workers)):
        time.sleep(chaos.uniform(1.0, 2.0))  # the chaos itself: when the next kill strikes
        for name in victims:
            workers[name].signal(signal.SIGKILL)
            kills.append(time.time())
        for name in victims:
            assert workers[name].wait_exit(5) == -signal.SIGKILL
            workers[name] = faults.start(name, "--concurrency", "4")
    faults.wait_all_ended(len(due), timeout=20)
    assert faults.counts() == {State.SUCCEEDED: len(due)}
    runs = assert_never_early(faults, due)
    for job_id, job_runs in runs.items():
        if len(job_runs) > 1:  # a kill struck while the first run went on, or was recorded
            first = min(job_runs, key=lambda r: r.at)
            struck = [k for k in kills if first.at <= k and (first.end or k) > k - 1]
            assert struck, f"job {job_id} ran twice, but no kill came during its first run"


#: How far the skewed worker's clock is ahead (the issue: +300 s).
SKEW = 300.0


@pytest.mark.parametrize("faults", ["redis"], indirect=True)
def test_worker_with_a_clock_300s_ahead_starts_nothing_early(faults: Faults) -> None:
    """Redis only: there, due times and leases use Redis ``TIME``, so a worker whose own clock
    is 300 s ahead (``FAULTAPP_CLOCK_SKEW``: its ``time.time()`` is moved) must behave exactly
    like the others. (On SQLite the backend's clock is each process's own, and every process on
    one machine reads the same kernel clock: a single skewed process cannot happen there.)

    Jobs due in 0.5 to 4 s run on time, once, some on the skewed worker; jobs due in 200 s
    (already due by the skewed clock) do not run; long jobs held by the other worker are not
    reaped by the skewed one, whose clock says their leases ran out long ago."""
    # Three slots each: of the four long jobs, each worker holds at least one.
    ahead = faults.start("ahead", "--concurrency", "3", env={"FAULTAPP_CLOCK_SKEW": str(SKEW)})
    assert f"skewed by +{SKEW:g}s" in ahead.text()
    normal = faults.start("normal", "--concurrency", "3")
    ledger = str(faults.ledger)
    # Long jobs, so that leases of both workers are live while the skewed one sweeps.
    long = faults.submit_many("tally", [[ledger, 100 + i, 3 * 1.5] for i in range(4)])
    due = submit_delayed(faults, [0.5 + 0.25 * i for i in range(15)])
    later = [
        faults.submit("tally", ledger, 200 + i, options=offload.SubmitOptions(delay=200)).id
        for i in range(3)
    ]
    for job_id in [*due, *long]:
        faults.wait_status(faults.app.get_job(job_id), State.SUCCEEDED, 20)

    runs = assert_never_early(faults, due)
    assert all(len(r) == 1 for r in runs.values()), "a job ran twice"
    ran_on = {r.worker for job in [*due, *long] for r in runs[job]}
    assert ran_on == {ahead.pid, normal.pid}, "both workers should have run jobs"
    for job_id in later:
        job = faults.app.get_job(job_id)
        assert job.status is State.SCHEDULED, f"job due in 200 s is {job.status}"
        assert job_id not in runs
        faults.app.cancel(job_id)
    assert_no_lease_lost(ahead, normal)


def assert_no_lease_lost(*workers: WorkerProcess) -> None:
    for w in workers:
        log = w.text()
        assert "lease lost" not in log, log[-2000:]
        assert "could not be renewed" not in log, log[-2000:]
        assert "Traceback" not in log
