"""SQLite under faults of its own kind: every process on the file killed at once, and a crowd.

SQLite has no server to crash: its "backend crash" is every process that has the file open
dying together, mid-transaction (a power cut short of the disk, or an OOM killer with a wide
aim). And its contention is several processes taking turns at one write lock. These tests run
on SQLite only (``faults`` parametrized to it).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faultkit import HERE, Faults, WorkerProcess, wait_until

from offload import State, Transition

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("faults", ["sqlite"], indirect=True)]


def acknowledged(path: Path) -> list[str]:
    """Job ids a submitter saw acknowledged (whole lines only)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line for line in text.split("\n")[:-1] if line]


def at_least(acks: Path, n: int) -> Callable[[], bool]:
    return lambda: len(acknowledged(acks)) >= n


def submitter(faults: Faults, name: str, acks: Path, stop: Path, *options: str) -> WorkerProcess:
    argv = [
        sys.executable,
        str(HERE / "submitter.py"),
        str(acks),
        str(faults.ledger),
        str(stop),
        "1000000",
        *options,
    ]
    return faults.spawn(name, argv)


# -- 1. the whole process tree SIGKILLed, three times -------------------------------------------
@pytest.mark.timeout(120)  # four generations of processes to start: 20-30 s on a loaded machine
def test_whole_process_tree_killed_three_times_loses_nothing(
    faults: Faults, chaos: random.Random
) -> None:
    """Two workers (one a supervisor with two children) and a submitter run on one file; at
    random moments (seeded) every one of them is SIGKILLed at once, mid-transaction for some,
    and they are all started again. Three times. Every acknowledged job ends succeeded; the
    file passes ``PRAGMA integrity_check`` (after each crash and at the end)."""
    acks, stop = faults.tmp / "acks.txt", faults.tmp / "stop"

    def start_all(generation: int) -> list[WorkerProcess]:
        single = faults.start(f"single{generation}", "--concurrency", "4")
        supervised = faults.start(
            f"sup{generation}", "--processes", "2", "--concurrency", "2", ready=False
        )
        supervised.wait_log(" serving ", count=2)
        return [single, supervised, submitter(faults, f"submitter{generation}", acks, stop)]

    processes = start_all(0)
    for generation in range(3):
        target = len(acknowledged(acks)) + chaos.randint(100, 400)
        wait_until(at_least(acks, target), 30, f"{target} submits")
        for process in processes:
            process.kill_group()
        for process in processes:
            process.wait_exit(10)
        faults.assert_integrity()
        processes = start_all(generation + 1)
    target = len(acknowledged(acks)) + 100
    wait_until(lambda: len(acknowledged(acks)) >= target, 30, f"{target} submits")
    stop.touch()
    assert processes[-1].wait_exit(10) == 0

    acked = acknowledged(acks)
    assert len(set(acked)) == len(acked), "a job id was acknowledged twice"
    faults.acknowledge(acked)
    counts = faults.wait_all_ended(len(acked), timeout=30)
    assert counts[State.SUCCEEDED] == counts.total(), counts
    records = faults.records(acked)
    assert {r.status for r in records.values()} == {State.SUCCEEDED}
    faults.measured["kills"] = 3
    for process in processes[:2]:
        assert "Traceback" not in process.text()


# -- 2. contention: a flooding tenant and a trickling one ---------------------------------------
#: How long the two tenants submit.
CONTENTION_SECONDS = 15.0
#: The longest a trickling tenant's job may wait to start (the issue's bound).
START_BOUND = 2.0


@pytest.mark.timeout(120)  # 15 s of load, then thousands of jobs to drain and check
def test_flooding_tenant_does_not_lock_out_a_trickling_one(faults: Faults) -> None:
    """Four workers and two submitting processes on one file for 15 s. Tenant ``flood`` submits
    as fast as it can into queue ``bulk``; tenant ``trickle`` submits five jobs a second into
    queue ``interactive``. Each worker serves ``bulk:3,interactive`` with four slots, as an app
    would keep a slot for interactive work: a per-queue cap, so bulk work can never take the
    last slot of a worker. No caller sees "database is locked" (nor any other error), and every
    trickling job starts within 2 s of its submit."""
    acks = {t: faults.tmp / f"acks-{t}.txt" for t in ("flood", "trickle")}
    stop = faults.tmp / "stop"
    workers = [
        faults.start(f"w{n}", "--queues", "bulk:3,interactive", "--concurrency", "4", ready=False)
        for n in range(4)
    ]
    for w in workers:
        w.wait_log(" serving ", timeout=30)
    flood = submitter(
        faults,
        "flood",
        acks["flood"],
        stop,
        "--tenant",
        "flood",
        "--queue",
        "bulk",
        "--pause",
        "0",
        "--sleep",
        "0.02",
    )
    trickle = submitter(
        faults,
        "trickle",
        acks["trickle"],
        stop,
        "--tenant",
        "trickle",
        "--queue",
        "interactive",
        "--pause",
        "0.2",
        "--sleep",
        "0.02",
    )
    began = time.monotonic()
    while time.monotonic() - began < CONTENTION_SECONDS:  # the load runs for its 15 s
        assert flood.proc.poll() is None, flood.text()
        assert trickle.proc.poll() is None, trickle.text()
        time.sleep(0.5)
    stop.touch()
    assert flood.wait_exit(10) == 0
    assert trickle.wait_exit(10) == 0

    for process in (flood, trickle):
        assert "submit failed" not in process.text(), process.text()[-2000:]
        assert ", 0 failed tries" in process.text()
    for process in (flood, trickle, *workers):
        log = process.text()
        assert "locked" not in log, f"{process.name}: {log[-2000:]}"
        assert "Traceback" not in log
        assert " failed: " not in log, f"{process.name}: {log[-2000:]}"  # claim, renewal...
    ids = {t: acknowledged(path) for t, path in acks.items()}
    faults.acknowledge(ids["flood"] + ids["trickle"])
    counts = faults.wait_all_ended(len(faults.acknowledged), timeout=60)
    assert counts[State.SUCCEEDED] == counts.total(), counts

    waits = [_start_wait(h) for h in faults.histories(ids["trickle"]).values()]
    slow = [w for w in waits if w > START_BOUND]
    faults.measured.update(
        flood_jobs=len(ids["flood"]),
        trickle_jobs=len(ids["trickle"]),
        trickle_wait_p50=round(statistics.median(waits), 3),
        trickle_wait_max=round(max(waits), 3),
    )
    assert len(ids["trickle"]) >= CONTENTION_SECONDS * 3, "the trickle was starved of submits"
    assert len(ids["flood"]) > 5 * len(ids["trickle"]), "the flood was no flood"
    assert not slow, f"{len(slow)} of {len(waits)} trickling jobs waited over 2 s: {slow[:5]}"


def _start_wait(history: list[Transition]) -> float:
    """Seconds from submit to the first claim (the backend's clock)."""
    claimed = next(t for t in history if t.reason.value == "claimed")
    return claimed.at - history[0].at
