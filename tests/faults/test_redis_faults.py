"""Redis itself failing: SIGKILLed and restarted under load, with workers and a client running.

These tests use a private ``redis-server`` (the ``redis_server`` fixture: loopback, a free port,
AOF with ``appendfsync always``) that they kill with SIGKILL and start again on the same port and
data folder; the ``outage`` fixture is a :class:`Faults` on it. Workers are real ``offload
worker`` processes; the client is a real process too (``submitter.py``), which counts a job as
acknowledged only when its submit returned.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from faultkit import HERE, LEASE, Faults, WorkerProcess, read_ledger, wait_until

from offload import State, Transition
from rediskit import RedisServer

pytestmark = pytest.mark.slow


def reasons(history: list[Transition]) -> list[str]:
    return [t.reason.value for t in history]


def at_least(acks: Path, n: int) -> Callable[[], bool]:
    return lambda: len(acknowledged(acks)) >= n


def noticed(process: WorkerProcess, complaints: int) -> Callable[[], bool]:
    """Whether ``process`` logged one more "unavailable" than ``complaints``."""
    return lambda: process.text().count("unavailable") > complaints


def acknowledged(path: Path) -> list[str]:
    """Job ids the submitter saw acknowledged (whole lines only)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line for line in text.split("\n")[:-1] if line]


def test_redis_killed_three_times_under_load_loses_no_acknowledged_job(
    outage: Faults, redis_server: RedisServer, chaos: random.Random
) -> None:
    """Redis is SIGKILLed three times under two workers and a submitter, at random moments
    (seeded), and started again on the same port and AOF. The first outage outlasts a lease
    (a long job's holder must stop it); the others last 0.2 to 2.5 s."""
    faults = outage
    workers = [faults.start("w1"), faults.start("w2")]
    acks, stop = faults.tmp / "acks.txt", faults.tmp / "stop"
    submitter = faults.spawn(
        "submitter",
        [
            sys.executable,
            str(HERE / "submitter.py"),
            str(acks),
            str(faults.ledger),
            str(stop),
            "6000",
        ],
    )
    wait_until(lambda: len(acknowledged(acks)) >= 200, 30, "200 acknowledged submits")
    # One long job (30 s on its first run), so that a lease surely runs out in the first outage.
    [long] = faults.submit_many("tally", [[str(faults.ledger), -1, 30.0, 0.05]])
    [first] = wait_until(
        lambda: [r for r in read_ledger(faults.ledger) if r.job == long],
        10,
        "the long job to start",
    )
    [holder] = [w for w in workers if w.pid == first.pid]

    for outage_no in range(3):
        if outage_no:  # some more load first: between 50 and 300 more acknowledged submits
            more = len(acknowledged(acks)) + chaos.randint(50, 300)
            wait_until(at_least(acks, more), 30, f"{more} submits")
        complained = [p.text().count("unavailable") for p in (*workers, submitter)]
        redis_server.kill()
        down = faults.note_fault("outage", None, time.time())
        if outage_no == 0:  # longer than a lease: the holder cannot renew, so it stops the job
            for process, before in zip((*workers, submitter), complained, strict=True):
                wait_until(noticed(process, before), 10, f"{process.name} to notice the outage")
            holder.wait_log(f"lease on job {long} could not be renewed in time; stopping it")
        else:
            time.sleep(chaos.uniform(0.2, 2.5))  # the outage itself, not a wait for anything
        acked_before = len(acknowledged(acks))
        redis_server.start()  # same port, same AOF
        down.end = restarted = time.time()

        def both_work_again(since: float = restarted, acked: int = acked_before) -> bool:
            late = {r.pid for r in read_ledger(faults.ledger) if r.at > since}
            return late == {w.pid for w in workers} and len(acknowledged(acks)) >= acked + 100

        wait_until(both_work_again, 30, "both workers to run jobs and 100 more submits")

    stop.touch()
    assert submitter.wait_exit(10) == 0
    assert "submit failed" in submitter.text()  # the outages were reported, never acknowledged
    faults.measured["failed_submit_tries"] = submitter.text().count("submit failed")
    acked = acknowledged(acks)
    assert len(set(acked)) == len(acked), "a job id was acknowledged twice"
    faults.acknowledge(acked)
    ids = [*acked, long]
    faults.wait_all_ended(len(ids), timeout=20 + 3 * LEASE)

    # Every acknowledged job is stored and succeeded, exactly once in its history (the history
    # check after the test matches every run in the ledger to a claim, and every rerun to a
    # lease that expired while Redis was down).
    records = faults.records(ids)
    unfinished = {i: r.status.value for i, r in records.items() if r.status is not State.SUCCEEDED}
    assert not unfinished, f"{len(unfinished)} acknowledged jobs did not succeed: {unfinished}"
    ran = {r.job for r in read_ledger(faults.ledger)}
    assert set(ids) <= ran, "an acknowledged job never ran"

    # The long job lost its lease in the first outage, and ran again afterwards.
    history = faults.histories([long])[long]
    assert reasons(history)[:4] == ["submitted", "claimed", "lease_expired", "claimed"]
    assert reasons(history)[-1] == "succeeded"
    assert sorted(r.attempt for r in read_ledger(faults.ledger) if r.job == long)[:2] == [1, 2]

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
