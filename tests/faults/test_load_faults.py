"""Several worker processes on one store, under load: every job runs, and runs once unless a fault
explains the rerun.

The evidence comes from two sides that do not depend on each other: the execution ledger the
``tally`` task appends to (one file per worker process: job id, attempt, pid) and each job's
recorded history in the backend. Both run on SQLite and on Redis (the ``faults`` fixture).
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import pytest
from faultkit import LEASE, Faults, Run, pid_of, read_ledger, runs_per_job, wait_until

from offload import State, Transition

pytestmark = pytest.mark.slow

JOBS = 2000


def reasons(history: list[Transition]) -> list[str]:
    return [t.reason.value for t in history]


def claims(history: list[Transition]) -> list[Transition]:
    return [t for t in history if t.reason.value == "claimed"]


def test_three_workers_run_every_job_exactly_once(faults: Faults) -> None:
    workers = [faults.start(f"w{n}") for n in (1, 2, 3)]
    pids = {w.pid for w in workers}

    ids = faults.submit_many("tally", [[str(faults.ledger), i] for i in range(JOBS)])
    assert len(set(ids)) == JOBS
    counts = faults.wait_all_ended(JOBS, timeout=45)
    assert counts == Counter({State.SUCCEEDED: JOBS})

    # The ledger: every job ran, exactly once, on one of the three workers.
    runs = read_ledger(faults.ledger)
    per_job = runs_per_job(runs)
    assert set(per_job) == set(ids)
    twice = [job for job, n in per_job.items() if n > 1]
    assert not twice, f"{len(twice)} jobs ran more than once, e.g. {twice[:3]}"
    assert {r.attempt for r in runs} == {1}
    assert {r.pid for r in runs} == pids, "all three workers should have taken part"

    # The histories agree: one claim each, by the worker the ledger names, then success.
    ran_on = {r.job: r.pid for r in runs}
    histories = faults.histories(ids)
    wrong = {
        job: reasons(h)
        for job, h in histories.items()
        if reasons(h) != ["submitted", "claimed", "succeeded"]
    }
    assert not wrong, f"{len(wrong)} histories differ, e.g. {list(wrong.items())[:3]}"
    for job, history in histories.items():
        [claim] = claims(history)
        assert (claim.attempt, pid_of(claim.worker_id)) == (1, ran_on[job])
        assert history[-1].token == claim.token
    assert {rec.attempts for rec in faults.records(ids).values()} == {1}
    for w in workers:
        assert w.proc.poll() is None, f"worker {w.name} exited"


def test_sigkill_under_load_reruns_only_the_dead_workers_jobs(faults: Faults) -> None:
    a = faults.start("a", "--concurrency", "4")
    ledger = str(faults.ledger)
    [victim] = faults.submit_many("tally", [[ledger, -1, 60.0, 0.0]])
    wait_until(lambda: victim in runs_per_job(read_ledger(faults.ledger)), 10, "a to start it")
    b = faults.start("b", "--concurrency", "4")
    ids = faults.submit_many("tally", [[ledger, i, 0.05] for i in range(300)])

    def a_is_busy() -> bool:  # a runs more than the victim: it dies with several jobs on it
        return sum(r.pid == a.pid for r in read_ledger(faults.ledger)) >= 20

    wait_until(a_is_busy, 20, "worker a to run some of the stream")
    a.signal(signal.SIGKILL)
    assert a.wait_exit(5) == -signal.SIGKILL
    everything = [victim, *ids]
    counts = faults.wait_all_ended(len(everything), timeout=30 + 3 * LEASE)
    assert counts == Counter({State.SUCCEEDED: len(everything)})

    runs = read_ledger(faults.ledger)
    by_job: dict[str, list[Run]] = {}
    for run in runs:
        by_job.setdefault(run.job, []).append(run)
    assert set(by_job) == set(everything), "every job ran"
    histories = faults.histories(everything)
    rerun = []
    for job, history in histories.items():
        taken = claims(history)
        # Each run in the ledger is one claim of the history: same attempt, same process.
        for run in by_job[job]:
            [claim] = [c for c in taken if c.attempt == run.attempt]
            assert pid_of(claim.worker_id) == run.pid
        assert reasons(history).count("succeeded") == 1
        assert reasons(history)[-1] == "succeeded"
        if len(taken) == 1:
            assert reasons(history) == ["submitted", "claimed", "succeeded"]
            continue
        # More than one claim: only because a held the job when it died.
        rerun.append(job)
        assert reasons(history) == [
            "submitted",
            "claimed",
            "lease_expired",
            "claimed",
            "succeeded",
        ], job
        first, second = taken
        assert (pid_of(first.worker_id), pid_of(second.worker_id)) == (a.pid, b.pid)
        assert first.token < second.token
    assert victim in rerun
    duplicates = {job: len(by_job[job]) for job in by_job if len(by_job[job]) > 1}
    assert set(duplicates) <= set(rerun), "a job ran twice without a lost lease to explain it"
    assert duplicates[victim] == 2
    assert b.proc.poll() is None


def test_sigkill_storm_loses_nothing_and_explains_every_rerun(
    faults: Faults, chaos: random.Random
) -> None:
    """Three workers (two slots each) run 300 jobs of 50 to 300 ms; every 2 s a random worker
    (seeded) is SIGKILLed and started again under the same name. Every job succeeds; the history
    check after the test matches each run to a claim and each rerun to the kill of the worker
    that held it, reaped within lease + reap interval."""
    names = ("s1", "s2", "s3")
    workers = {name: faults.start(name, "--concurrency", "2") for name in names}
    ledger = str(faults.ledger)
    durations = [round(chaos.uniform(0.05, 0.3), 3) for _ in range(STORM_JOBS)]
    ids = faults.submit_many("tally", [[ledger, i, d, d] for i, d in enumerate(durations)])

    def ended() -> bool:
        return faults.counts()[State.SUCCEEDED] == STORM_JOBS

    kills = 0
    next_kill = time.monotonic() + 2.0  # every 2 s, counted from the kills, not the restarts
    while not ended():
        while time.monotonic() < next_kill and not ended():
            time.sleep(0.1)
        next_kill += 2.0
        if ended():
            break
        victim = chaos.choice(names)
        workers[victim].signal(signal.SIGKILL)
        assert workers[victim].wait_exit(5) == -signal.SIGKILL
        kills += 1
        workers[victim] = faults.start(victim, "--concurrency", "2")
        assert kills <= 30, "the storm does not end"
    assert kills >= 3, f"only {kills} kills: the jobs ran too fast for a storm"

    records = faults.records(ids)
    assert {r.status for r in records.values()} == {State.SUCCEEDED}
    faults.measured["kills"] = kills


#: Jobs of the SIGKILL storm: with their 50-300 ms, about 9 s of work for six slots.
STORM_JOBS = 300
