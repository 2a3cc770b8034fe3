"""Cancel, timeout and shutdown of a running job, for each executor, in real worker processes.

The executors: ``async`` (a coroutine on the worker's loop), ``thread``, ``process`` (a child
of the worker's pool) and ``run_process`` (a command in its own process group, from an async
task). Each test runs on SQLite and on Redis (``faults``). The ``run_process`` executor's
group kill (grandchildren included) on cancel, timeout and SIGTERM is covered for thread and
async callers in test_worker_faults.py.
"""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path

import pytest
from faultkit import Faults, pid_gone, read_ledger, session_pids, wait_until

from offload import State, Transition
from offload.core.job import Lease
from offload.errors import LeaseLost

pytestmark = pytest.mark.slow

#: executor -> (task, the same task with a 1 s timeout)
TASKS = {
    "async": ("tally", "tally_t"),
    "thread": ("tally_thread", "tally_thread_t"),
    "process": ("tally_process", "tally_process_t"),
    "run_process": ("tally_cmd", "tally_cmd_t"),
}
PROCESS_POOL = {"FAULTAPP_PROCESS": "1"}


def reasons(history: list[Transition]) -> list[str]:
    return [t.reason.value for t in history]


def late_completion_is_rejected(faults: Faults, job_id: str, history: list[Transition]) -> None:
    """Replay the completion of the job's run, with its own lease token: LeaseLost, and the
    job is unchanged."""
    claim = next(t for t in history if t.reason.value == "claimed")
    before = faults.records([job_id])[job_id]
    with pytest.raises(LeaseLost):
        faults.call(lambda b: b.complete(Lease(job_id, claim.token), {"late": True}))
    after = faults.records([job_id])[job_id]
    assert (after.status, after.result, after.updated_at) == (
        before.status,
        before.result,
        before.updated_at,
    )
    assert faults.histories([job_id])[job_id] == history


def sleep_commands(worker_pid: int) -> list[int]:
    """``sleep`` processes left in the worker's session (the commands of ``tally_cmd``)."""
    found = []
    for pid in session_pids(worker_pid):
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if argv0.endswith(b"sleep") and not pid_gone(pid):
            found.append(pid)
    return found


@pytest.mark.parametrize("executor", list(TASKS))
def test_cancel_and_timeout_stop_the_run_and_reject_a_late_completion(
    faults: Faults, executor: str
) -> None:
    """One job is cancelled while it runs, another runs past its 1 s timeout. Both runs stop
    (the code sees the cancel, or its process or command is killed), the jobs end
    ``cancelled`` and ``failed``/``timeout``, their completions replayed afterwards with their
    own lease tokens are rejected, and the worker goes on running jobs."""
    worker = faults.start("x", env=PROCESS_POOL if executor == "process" else None)
    task, timed = TASKS[executor]
    ledger = str(faults.ledger)
    [victim] = faults.submit_many(task, [[ledger, 0, 30.0]])
    [slow] = faults.submit_many(timed, [[ledger, 1, 30.0]])
    wait_until(lambda: len(read_ledger(faults.ledger)) == 2, 20, "both jobs to start")

    faults.app.cancel(victim)
    faults.wait_status(faults.app.get_job(victim), State.CANCELLED, 10)
    timed_out = faults.wait_status(faults.app.get_job(slow), State.FAILED, 10)
    assert timed_out.error is not None
    assert timed_out.error["type"] == "JobTimeout"
    histories = faults.histories([victim, slow])
    assert reasons(histories[victim]) == ["submitted", "claimed", "cancelled"]
    assert reasons(histories[slow]) == ["submitted", "claimed", "timeout"]

    runs = {r.job: r for r in read_ledger(faults.ledger)}
    for job_id in (victim, slow):
        run = runs[job_id]
        ended = histories[job_id][-1].at
        if executor == "process":  # the child was killed: it never wrote its end
            assert run.pid != worker.pid
            assert run.end is None
            wait_until(partial(pid_gone, run.pid), 5, f"child {run.pid} to be killed")
        else:  # the code saw the cancel (a thread polls for it) and stopped at once
            assert run.pid == worker.pid
            assert run.outcome == "cancelled", run
            assert run.end is not None
            assert run.end <= ended + 0.5, f"ran {run.end - ended:.2f}s past its end"
        late_completion_is_rejected(faults, job_id, histories[job_id])
    if executor == "run_process":
        wait_until(lambda: not sleep_commands(worker.pid), 5, "the commands to be killed")

    [after] = faults.submit_many(task, [[ledger, 2, 0.0]])
    faults.wait_status(faults.app.get_job(after), State.SUCCEEDED, 10)
    assert "Traceback" not in worker.text()


def test_thread_that_ignores_cancel_finishes_late_and_its_result_is_discarded(
    faults: Faults,
) -> None:
    """A thread cannot be interrupted: a thread task that never looks at its cancel flag keeps
    running after the cancel. The job is recorded ``cancelled`` at once; the thread returns
    later, and its result is dropped: no success, and a replayed completion is rejected. The
    thread keeps its slot until it returns (one slot here: the next job waits for it)."""
    worker = faults.start("t", "--concurrency", "1")
    ledger = str(faults.ledger)
    [job_id] = faults.submit_many("tally_thread", [[ledger, 0, 2.0, 0.0, False]])
    wait_until(lambda: read_ledger(faults.ledger), 10, "the job to start")
    faults.app.cancel(job_id)
    job = faults.wait_status(faults.app.get_job(job_id), State.CANCELLED, 5)
    cancelled_at = job.history()[-1].at
    [after] = faults.submit_many("tally", [[ledger, 1]])

    faults.wait_status(faults.app.get_job(after), State.SUCCEEDED, 10)
    runs = {r.job: r for r in read_ledger(faults.ledger)}
    run = runs[job_id]
    assert run.outcome == "returned"
    assert run.end is not None
    assert run.end > cancelled_at, "the thread returned before the job was marked cancelled"
    assert runs[after].at >= run.end, "the next job started while the thread held its slot"
    history = faults.histories([job_id])[job_id]
    assert reasons(history) == ["submitted", "claimed", "cancelled"]
    assert faults.records([job_id])[job_id].result is None
    late_completion_is_rejected(faults, job_id, history)
    assert "Traceback" not in worker.text()


def test_sigterm_releases_a_process_job_and_kills_its_child(faults: Faults) -> None:
    """Graceful shutdown of the process executor: a job that outlasts the grace is released
    (attempt refunded), its child process is killed, and another worker takes it at once."""
    env = {**PROCESS_POOL, "OFFLOAD_LEASE_SECONDS": "10"}  # released, not reaped
    first = faults.start("p1", "--shutdown-grace", "0.5", env=env)
    ledger = str(faults.ledger)
    [job_id] = faults.submit_many("tally_process", [[ledger, 0, 30.0, 0.05]])
    [run] = wait_until(lambda: read_ledger(faults.ledger), 20, "the job to start")
    assert run.worker == first.pid
    assert run.pid != first.pid

    first.signal(signal.SIGTERM)
    assert first.wait_exit(10) == 0
    assert pid_gone(run.pid)
    job = faults.app.get_job(job_id)
    assert job.status is State.QUEUED
    assert job.attempts == 0
    assert reasons(job.history()) == ["submitted", "claimed", "released"]

    second = faults.start("p2", env=env)
    faults.wait_status(job, State.SUCCEEDED, 10)  # well within the 10 s lease
    reruns = [r for r in read_ledger(faults.ledger) if r.worker == second.pid]
    assert [(r.attempt, r.outcome) for r in reruns] == [(1, "returned")]
