"""Workers as real OS processes under real faults: kill -9, SIGTERM, SIGSTOP, poison pills.

Each test runs twice, on a fresh SQLite file and in a fresh Redis namespace (the ``faults``
fixture). It starts ``python -m offload worker faultapp:app`` processes with short timings
(lease 1.5 s, renew and reap every 0.3 s; see ``faultkit.TIMINGS``) and drives and inspects
jobs from this process. Waits are polls with deadlines; nothing sleeps to synchronise.
"""

from __future__ import annotations

import signal
import time

import pytest
from faultkit import LEASE, REAP, Faults, WorkerProcess, pid_gone, wait_until

import offload
from offload import State, Transition

pytestmark = pytest.mark.slow

#: Scheduling noise allowed on top of the lease and reap timings.
SLACK = 1.0


def reasons(history: list[Transition]) -> list[str]:
    return [t.reason.value for t in history]


def claims(history: list[Transition]) -> list[Transition]:
    return [t for t in history if t.reason.value == "claimed"]


def stop_outside_write(worker: WorkerProcess) -> None:
    """SIGSTOP ``worker`` at a moment it holds no SQLite write lock.

    A process frozen inside a write transaction would lock every other process out of the file;
    that is a property of SQLite, not what these tests are about. (On Redis no client holds a
    lock, so the first stop is kept.)
    """
    for _ in range(50):
        worker.signal(signal.SIGSTOP)
        wait_until(lambda: _state(worker.pid) == "T", 5, f"worker {worker.name} to stop")
        if not worker.holds_write_lock():
            return
        worker.signal(signal.SIGCONT)
        time.sleep(0.01)  # let it finish its transaction before trying again
    raise AssertionError(f"worker {worker.name} always held the write lock")


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


# -- 1. kill -9 ----------------------------------------------------------------------------------
def test_sigkill_mid_job_is_recovered_by_another_worker(faults: Faults) -> None:
    a = faults.start("a")
    job = faults.submit("nap", str(faults.marks), "k", 30.0, 0.2)
    assert faults.marker("k", 1)["pid"] == a.pid
    b = faults.start("b")

    a.signal(signal.SIGKILL)
    killed_at = time.time()
    assert a.wait_exit(5) == -signal.SIGKILL

    faults.wait_status(job, State.SUCCEEDED, LEASE + REAP + SLACK + 5)
    assert job.result(timeout=1) == {"pid": b.pid, "run": 2}
    assert job.attempts == 2
    history = job.history()
    assert reasons(history) == ["submitted", "claimed", "lease_expired", "claimed", "succeeded"]
    first, second = claims(history)
    assert first.worker_id is not None
    assert first.worker_id.startswith(f"a-{a.pid}-")
    assert second.worker_id is not None
    assert second.worker_id.startswith(f"b-{b.pid}-")
    assert first.token < second.token
    expired = history[2]
    assert (expired.from_status, expired.to_status) == (State.RUNNING, State.QUEUED)
    # A renewed at most a renew interval before it died, so its lease ran out within LEASE.
    recovery = second.at - killed_at
    assert recovery <= LEASE + REAP + SLACK, f"recovered {recovery:.2f}s after the kill"


# -- 2. SIGTERM drains ---------------------------------------------------------------------------
def test_sigterm_lets_running_job_finish_and_claims_nothing_more(faults: Faults) -> None:
    w = faults.start("d", "--shutdown-grace", "5")
    job = faults.submit("nap", str(faults.marks), "d", 1.0)
    faults.marker("d", 1)

    w.signal(signal.SIGTERM)
    w.wait_log("received SIGTERM: draining")
    late = faults.submit("nap", str(faults.marks), "late", 0.0)

    assert w.wait_exit(10) == 0
    job.refresh()
    assert job.status is State.SUCCEEDED
    assert job.attempts == 1
    assert job.result(timeout=1)["pid"] == w.pid
    late.refresh()
    assert late.status is State.QUEUED
    assert late.attempts == 0
    assert reasons(late.history()) == ["submitted"]
    assert not (faults.marks / "late.1.json").exists()
    assert "stopped after 1 job(s); released 0" in w.text()
    faults.allow_pending(late.id)  # no worker is left to run it


# -- 3. SIGTERM releases what does not finish within the grace -----------------------------------
@pytest.mark.parametrize("task", ["nap", "anap"], ids=["thread", "async"])
def test_sigterm_releases_unfinished_job_to_the_queue(faults: Faults, task: str) -> None:
    # A long lease: the job must come back by release, not by a lease running out.
    lease = {"OFFLOAD_LEASE_SECONDS": "10"}
    first = faults.start("r1", "--shutdown-grace", "0.5", env=lease)
    job = faults.submit(task, str(faults.marks), "r", 30.0, 0.2)
    assert faults.marker("r", 1)["pid"] == first.pid

    asked = time.monotonic()
    first.signal(signal.SIGTERM)
    assert first.wait_exit(10) == 0
    took = time.monotonic() - asked
    assert took < 5.0, f"the worker took {took:.2f}s to exit after SIGTERM"

    job.refresh()
    assert job.status is State.QUEUED
    assert job.attempts == 0
    assert job.record.worker_id is None
    history = job.history()
    assert reasons(history) == ["submitted", "claimed", "released"]
    assert (history[-1].from_status, history[-1].to_status) == (State.RUNNING, State.QUEUED)
    assert "released 1" in first.text()

    second = faults.start("r2", env=lease)
    ready = time.time()
    faults.wait_status(job, State.SUCCEEDED, 5)  # half the 10 s lease
    assert job.result(timeout=1) == {"pid": second.pid, "run": 2}
    assert job.attempts == 1
    history = job.history()
    assert reasons(history) == [
        "submitted",
        "claimed",
        "released",
        "claimed",
        "succeeded",
    ]
    again = claims(history)[1]
    assert again.worker_id is not None
    assert again.worker_id.startswith(f"r2-{second.pid}-")
    assert again.at - ready < SLACK, f"claimed {again.at - ready:.2f}s after the worker started"


# -- 4. a job's whole process group dies with it -------------------------------------------------
EXECUTORS = pytest.mark.parametrize("kind", ["thread", "async"])
TASKS = {"thread": "grandchild", "async": "agrandchild"}


def _start_grandchild(faults: Faults, task: str, *worker_args: str) -> tuple[offload.Job, int]:
    faults.start("g", *worker_args)
    pidfile = faults.pidfile("grandchild.pid")
    job = faults.submit(task, str(pidfile))
    pid = faults.read_pid(pidfile)
    assert not pid_gone(pid)
    return job, pid


def _assert_gone(pid: int) -> None:
    wait_until(lambda: pid_gone(pid), 5, f"grandchild {pid} to be killed")


@EXECUTORS
def test_cancel_kills_the_commands_grandchild(faults: Faults, kind: str) -> None:
    job, pid = _start_grandchild(faults, TASKS[kind])

    faults.app.cancel(job.id)
    faults.wait_status(job, State.CANCELLED, 5)
    _assert_gone(pid)
    assert reasons(job.history())[-1] == "cancelled"
    with pytest.raises(offload.JobCancelled):
        job.result(timeout=1)


@EXECUTORS
def test_timeout_kills_the_commands_grandchild(faults: Faults, kind: str) -> None:
    job, pid = _start_grandchild(faults, f"{TASKS[kind]}_timeout")

    faults.wait_status(job, State.FAILED, 5)
    _assert_gone(pid)
    assert job.error is not None
    assert job.error["type"] == "JobTimeout"
    assert reasons(job.history())[-1] == "timeout"


@EXECUTORS
def test_sigterm_kills_the_commands_grandchild(faults: Faults, kind: str) -> None:
    job, pid = _start_grandchild(faults, TASKS[kind], "--shutdown-grace", "0.5")
    [worker] = faults.workers

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(5) == 0
    _assert_gone(pid)
    job.refresh()
    assert job.status is State.QUEUED
    assert job.attempts == 0
    assert reasons(job.history())[-1] == "released"
    faults.allow_pending(job.id)  # no worker is left to run it


# -- 5. a stale owner's late result is rejected --------------------------------------------------
def test_stopped_worker_cannot_overwrite_the_new_owners_result(faults: Faults) -> None:
    a = faults.start("a")
    job = faults.submit("nap", str(faults.marks), "s", 1.0, 1.0)
    assert faults.marker("s", 1)["pid"] == a.pid
    stop_outside_write(a)  # A's run finishes its sleep while A is frozen
    b = faults.start("b")

    faults.wait_status(job, State.SUCCEEDED, LEASE + REAP + SLACK + 5)
    assert faults.marker("s", 2)["pid"] == b.pid
    a.signal(signal.SIGCONT)
    a.wait_log(f"job {job.id} (nap)")  # A is done with its run, one way or the other

    job.refresh()
    assert job.status is State.SUCCEEDED
    assert job.result(timeout=1) == {"pid": b.pid, "run": 2}
    history = job.history()
    assert reasons(history).count("succeeded") == 1
    assert history[-1].reason.value == "succeeded"
    assert history[-1].token == claims(history)[1].token
    log = a.text()
    assert "discarded" in log or "stopping (lost)" in log
    assert f"job {job.id} (nap) succeeded" not in log  # A must not claim a success it lost

    # A still works: with B gone, A runs the next job.
    b.signal(signal.SIGTERM)
    assert b.wait_exit(10) == 0
    after = faults.submit("nap", str(faults.marks), "after", 0.0)
    assert after.result(timeout=5) == {"pid": a.pid, "run": 1}
    assert a.proc.poll() is None


# -- 6. poison pill ------------------------------------------------------------------------------
def test_job_that_kills_its_worker_fails_as_worker_lost(faults: Faults) -> None:
    # One slot per process: only the pill dies with its worker, never a bystander.
    sup = faults.start("p", "--processes", "2", "--concurrency", "1", ready=False)
    sup.wait_log(" serving ", count=2)
    pill = faults.submit("poison")
    others = [faults.submit("quick", i) for i in range(100)]  # the issue: 100 normal jobs

    faults.wait_status(pill, State.FAILED, 3 * (LEASE + REAP + SLACK) + 5)
    assert pill.error is not None
    assert pill.error["type"] == "WorkerLost"
    assert pill.record.losses == 3
    history = pill.history()
    assert reasons(history) == [
        "submitted",
        "claimed",
        "lease_expired",
        "claimed",
        "lease_expired",
        "claimed",
        "worker_lost",
    ]
    assert len({t.worker_id for t in claims(history)}) == 3  # three incarnations
    assert sup.text().count("exited with -9; restarting") == 3

    for job in others:
        assert job.result(timeout=5)["i"] is not None
        assert job.attempts == 1


def test_poison_pill_does_not_take_jobs_claimed_with_it_down(faults: Faults) -> None:
    # The default slots: the pill is claimed in one batch with other jobs and kills them too.
    # Those bystanders did nothing wrong; DESIGN 6: "other jobs keep flowing".
    sup = faults.start("p", "--processes", "2", ready=False)
    sup.wait_log(" serving ", count=2)
    app = faults.app
    first = app.prepare(app.registry.get("poison"), [], {}, offload.SubmitOptions(priority=1))
    rest = [
        app.prepare(app.registry.get("quick"), [i], {}, offload.SubmitOptions()) for i in range(20)
    ]
    pill, *others = app.run_sync(app.asubmit_many([first, *rest]))  # one commit, one claim
    faults.acknowledge(job.id for job in (pill, *others))

    faults.wait_status(pill, State.FAILED, 3 * (LEASE + REAP + SLACK) + 5)
    assert pill.error is not None
    assert pill.error["type"] == "WorkerLost"
    lost = []
    for job in others:
        faults.wait_until_terminal(job, 5)
        if job.status is not State.SUCCEEDED:
            lost.append(f"{job.id} {job.status} after {job.record.losses} losses")
    assert not lost, f"{len(lost)} of 20 bystanders did not succeed: {', '.join(lost)}"


# -- 7. a blocked event loop does not lose the lease ---------------------------------------------
@pytest.mark.parametrize("spin", [False, True], ids=["sleep", "spin"])
def test_job_blocking_the_event_loop_keeps_its_lease(faults: Faults, spin: bool) -> None:
    faults.start("e")
    job = faults.submit("loop_blocker", str(faults.marks), "e", 3 * LEASE, spin)
    faults.marker("e", 1)

    def renewed() -> bool:
        job.refresh()
        rec = job.record
        assert rec.status is State.RUNNING
        assert rec.started_at is not None
        return rec.lease_until is not None and rec.lease_until > rec.started_at + LEASE + 0.5

    wait_until(renewed, 2 * LEASE, "the lease to be renewed while the loop is blocked")
    faults.wait_status(job, State.SUCCEEDED, 3 * LEASE + 5)
    assert job.attempts == 1
    assert reasons(job.history()) == ["submitted", "claimed", "succeeded"]
