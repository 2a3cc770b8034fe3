"""A job handed to an idle worker that dies (lua/handoff.lua) still runs, once, soon.

An idle Redis worker registers for hand-offs for WINDOW (1 s) at a time. Killed while
registered, it may be handed one job: the job is then running under the dead worker's id and
is recovered as any job of a dead worker (its lease ends, a live worker's reaper requeues it).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from faultkit import HERE, LEASE, REAP, Faults, WorkerProcess, wait_until

from offload import State
from rediskit import TEST_REDIS

pytestmark = pytest.mark.slow

SLACK = 1.0


@pytest.fixture
def redis_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    monkeypatch.syspath_prepend(str(HERE))
    faults = Faults(tmp_path, "redis")
    try:
        yield faults
    finally:
        faults.cleanup()


def registered_for_a_while(faults: Faults, worker: WorkerProcess) -> bool:
    """Whether ``worker`` is registered as idle for at least 0.3 s more (server time)."""
    client = redis.Redis.from_url(TEST_REDIS, decode_responses=True)
    try:
        seconds, micros = client.time()
        now = seconds + micros / 1e6
        key = "{" + str(faults.own_namespace) + "}:idle:default"
        members = client.zrange(key, 0, -1, withscores=True)
        return any(m.startswith(f"a-{worker.pid}-") and s > now + 0.3 for m, s in members)
    finally:
        client.close()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def test_a_job_handed_to_a_killed_idle_worker_runs_once_soon(redis_faults: Faults) -> None:
    faults = redis_faults
    a = faults.start("a")
    warm = faults.submit("nap", str(faults.marks), "warm", 0.0)
    faults.wait_status(warm, State.SUCCEEDED, 10)
    for _ in range(50):  # freeze it at a moment it is registered, then kill it
        a.signal(signal.SIGSTOP)
        wait_until(lambda: _state(a.pid) == "T", 5, "worker a to stop")
        if registered_for_a_while(faults, a):
            break
        a.signal(signal.SIGCONT)
        time.sleep(0.05)
    else:
        raise AssertionError("worker a was never seen registered")
    a.signal(signal.SIGKILL)
    assert a.wait_exit(5) == -signal.SIGKILL

    job = faults.submit("nap", str(faults.marks), "k", 0.0)
    job.refresh()
    assert job.status is State.RUNNING  # handed to the dead worker by the submit itself
    b = faults.start("b")
    handed_at = time.time()

    faults.wait_status(job, State.SUCCEEDED, LEASE + REAP + SLACK + 5)
    assert job.result(timeout=1) == {"pid": b.pid, "run": 1}  # run once, by b
    reasons = [t.reason.value for t in job.history()]
    assert reasons == ["submitted", "claimed", "lease_expired", "claimed", "succeeded"]
    first, second = (t for t in job.history() if t.reason.value == "claimed")
    assert first.worker_id is not None
    assert first.worker_id.startswith(f"a-{a.pid}-")
    assert second.worker_id is not None
    assert second.worker_id.startswith(f"b-{b.pid}-")
    assert first.token < second.token
    assert second.at - handed_at <= LEASE + REAP + SLACK
