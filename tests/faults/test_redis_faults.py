"""Redis itself failing: SIGKILLed and restarted under load, with workers and a client running.

These tests use a private ``redis-server`` (``rediskit.RedisServer``: loopback, a free port, AOF
with ``appendfsync always``) that they kill with SIGKILL and start again on the same port and
data folder. Workers are real ``offload worker`` processes; the client is a real process too
(``submitter.py``), which counts a job as acknowledged only when its submit returned.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from faultkit import HERE, LEASE, Faults, Run, pid_of, read_ledger, wait_until

from offload import State, Transition
from rediskit import RedisServer

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.kill()  # only the redis-server this fixture started


@pytest.fixture
def outage(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Faults]:
    """Faults on the private server (whose log is shown when a test fails)."""
    monkeypatch.syspath_prepend(str(HERE))
    f = Faults(tmp_path, "redis", url=f"{redis_server.url}?prefix=outage")
    f.extra_logs.append(redis_server.workdir / "redis.log")
    try:
        yield f
    finally:
        f.cleanup()


def reasons(history: list[Transition]) -> list[str]:
    return [t.reason.value for t in history]


def acknowledged(path: Path) -> list[str]:
    """Job ids the submitter saw acknowledged (whole lines only)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line for line in text.split("\n")[:-1] if line]


def test_redis_killed_mid_load_loses_no_acknowledged_job(
    outage: Faults, redis_server: RedisServer
) -> None:
    faults = outage
    workers = [faults.start("w1"), faults.start("w2")]
    acks, stop = faults.tmp / "acks.txt", faults.tmp / "stop"
    submitter = faults.spawn("submitter", [
        sys.executable, str(HERE / "submitter.py"), str(acks), str(faults.ledger), str(stop),
        "3000",
    ])  # fmt: skip
    wait_until(lambda: len(acknowledged(acks)) >= 200, 30, "200 acknowledged submits")
    # One long job (30 s on its first run), so that a lease surely runs out in the outage.
    [long] = faults.submit_many("tally", [[str(faults.ledger), -1, 30.0, 0.05]])
    [first] = wait_until(lambda: [r for r in read_ledger(faults.ledger) if r.job == long], 10,
                         "the long job to start")  # fmt: skip
    [holder] = [w for w in workers if w.pid == first.pid]

    redis_server.kill()
    for process in (*workers, submitter):  # every process has noticed the outage
        process.wait_log("unavailable")
    # Down for longer than a lease: the holder cannot renew, so it stops the job itself.
    holder.wait_log(f"lease on job {long} could not be renewed in time; stopping it")
    down = len(acknowledged(acks))
    restarted = time.time()
    redis_server.start()  # same port, same AOF

    def both_work_again() -> bool:
        late = {r.pid for r in read_ledger(faults.ledger) if r.at > restarted}
        return late == {w.pid for w in workers} and len(acknowledged(acks)) >= down + 200

    wait_until(both_work_again, 30, "both workers to run jobs and 200 more acknowledged submits")
    stop.touch()
    assert submitter.wait_exit(10) == 0
    assert "submit failed" in submitter.text()  # the outage was reported, never acknowledged
    acked = acknowledged(acks)
    assert len(set(acked)) == len(acked), "a job id was acknowledged twice"
    ids = [*acked, long]
    faults.wait_all_ended(len(ids), timeout=20 + 3 * LEASE)

    # Every acknowledged job is stored and succeeded, exactly once in its history.
    records = faults.records(ids)
    unfinished = {i: r.status.value for i, r in records.items() if r.status is not State.SUCCEEDED}
    assert not unfinished, f"{len(unfinished)} acknowledged jobs did not succeed: {unfinished}"
    histories = faults.histories(ids)
    for history in histories.values():
        assert reasons(history)[0] == "submitted"
        assert reasons(history)[-1] == "succeeded"
        assert reasons(history).count("succeeded") == 1

    # Every job ran; each run is a claim of its history (attempt and process), and a job ran
    # more than once only after its lease ran out.
    by_job: dict[str, list[Run]] = {}
    for run in read_ledger(faults.ledger):
        by_job.setdefault(run.job, []).append(run)
    assert set(ids) <= set(by_job), "an acknowledged job never ran"
    for job in ids:
        history, runs = histories[job], by_job[job]
        claimed = {(t.attempt, pid_of(t.worker_id)) for t in history if t.reason.value == "claimed"}
        assert {(r.attempt, r.pid) for r in runs} <= claimed, f"job {job}: runs {runs}"
        if len(runs) > 1:
            assert "lease_expired" in reasons(history), f"job {job} ran twice unexplained"

    # The long job lost its lease in the outage, and ran again afterwards.
    assert reasons(histories[long]) == [
        "submitted", "claimed", "lease_expired", "claimed", "succeeded",
    ]  # fmt: skip
    assert sorted(r.attempt for r in by_job[long]) == [1, 2]

    # The workers rode it out: still running, and their logs say what happened.
    for w in workers:
        assert w.proc.poll() is None, f"worker {w.name} exited"
        assert "claim failed" in w.text()
        assert "Traceback" not in w.text()


def test_idle_worker_is_woken_by_submits_after_a_redis_restart(
    outage: Faults, redis_server: RedisServer
) -> None:
    # An idle worker waits on a pub/sub channel for submits (its fallback poll is 30 s here):
    # after Redis comes back, it must be subscribed again and woken by the next submit.
    faults = outage
    worker = faults.start("i", env={"OFFLOAD_IDLE_WAIT": "30"})
    ledger = str(faults.ledger)

    def subscriptions() -> dict[str, int]:
        """Channels with subscribers on the private server (the worker's wake-up channel)."""
        client = redis.Redis(port=redis_server.port, decode_responses=True)
        try:
            channels = client.pubsub_channels()
            return {name: n for name, n in client.pubsub_numsub(*channels) if n} if channels else {}
        finally:
            client.close()

    def run_one(i: int) -> None:
        [job] = faults.submit_many("tally", [[ledger, i]])
        faults.wait_status(faults.app.get_job(job), State.SUCCEEDED, 10)  # a third of 30 s

    run_one(0)
    before = wait_until(subscriptions, 10, "the worker to subscribe")
    redis_server.kill()
    worker.wait_log("claim failed")
    redis_server.start()
    wait_until(lambda: subscriptions() == before, 10, f"the subscriptions {before} again")
    for i in range(1, 4):  # the first may be claimed by a retry; the others need a wake-up
        run_one(i)
    assert worker.proc.poll() is None
