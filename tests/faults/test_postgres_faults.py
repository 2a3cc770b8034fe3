"""PostgreSQL itself failing: a worker's connections terminated, the server restarted under load.

``pg_terminate_backend`` ends a worker's sessions on the server side while it claims, runs and
completes jobs (each worker names its sessions with ``PGAPPNAME``, so the test finds them in
``pg_stat_activity``). The restart test runs on a private cluster (``postgres_server``: initdb
in the test's folder, a free port) that it stops with ``-m immediate`` (a crash: recovery at the
next start) and starts again; the shared server at 5432 is never touched. Workers and the
client are real processes (``submitter.py`` counts a job as acknowledged only when its submit
returned); the history checker runs after each test, and no acknowledged job may be lost.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from faultkit import HERE, LEASE, Faults, WorkerProcess, read_ledger, wait_until

from offload import State
from pgkit import PostgresServer

pytestmark = pytest.mark.slow

TERMINATE = """
    SELECT pg_terminate_backend(pid), state, left(query, 40)
    FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()
"""


def acknowledged(path: Path) -> list[str]:
    """Job ids the submitter saw acknowledged (whole lines only)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line for line in text.split("\n")[:-1] if line]


def at_least(acks: Path, n: int) -> Callable[[], bool]:
    return lambda: len(acknowledged(acks)) >= n


def server_of(url: str) -> str:
    """The backend URL without offload's options (a plain libpq URL)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def start_submitter(faults: Faults, most: int) -> tuple[WorkerProcess, Path, Path]:
    acks, stop = faults.tmp / "acks.txt", faults.tmp / "stop"
    submitter = faults.spawn(
        "submitter",
        [
            sys.executable,
            str(HERE / "submitter.py"),
            str(acks),
            str(faults.ledger),
            str(stop),
            str(most),
        ],
    )
    return submitter, acks, stop


def finish(faults: Faults, submitter: WorkerProcess, acks: Path, stop: Path) -> list[str]:
    """Stop the submitter; every acknowledged job must end SUCCEEDED and have run."""
    stop.touch()
    assert submitter.wait_exit(20) == 0
    acked = acknowledged(acks)
    assert len(set(acked)) == len(acked), "a job id was acknowledged twice"
    faults.acknowledge(acked)
    faults.wait_all_ended(len(acked), timeout=30 + 3 * LEASE)
    records = faults.records(acked)
    unfinished = {i: r.status.value for i, r in records.items() if r.status is not State.SUCCEEDED}
    assert not unfinished, f"{len(unfinished)} acknowledged jobs did not succeed: {unfinished}"
    ran = {r.job for r in read_ledger(faults.ledger)}
    assert set(acked) <= ran, "an acknowledged job never ran"
    return acked


@pytest.mark.parametrize("faults", ["postgres"], indirect=True)
def test_worker_sessions_terminated_under_load_lose_no_acknowledged_job(
    faults: Faults, chaos: random.Random
) -> None:
    """For about 12 s, every 0.1 to 0.6 s (seeded), one worker's sessions are ended with
    ``pg_terminate_backend``: sessions that were claiming, completing, renewing or listening.
    Both workers must ride it out, and every acknowledged job succeed exactly once."""
    names = {"w1": "offload-fault-w1", "w2": "offload-fault-w2"}
    workers = {n: faults.start(n, env={"PGAPPNAME": a}) for n, a in names.items()}
    submitter, acks, stop = start_submitter(faults, 8000)
    wait_until(at_least(acks, 100), 30, "100 acknowledged submits")
    ended: dict[str, int] = {}
    with psycopg.connect(server_of(faults.url), autocommit=True) as admin:
        until = time.monotonic() + 12
        while time.monotonic() < until:
            name = chaos.choice(sorted(names))
            at = time.time()
            rows = admin.execute(TERMINATE, (names[name],)).fetchall()  # type: ignore[arg-type]
            faults.note_fault("reset", [workers[name].pid], at, time.time())
            for _, state, query in rows:
                what = "idle" if state == "idle" else (query or "?").split()[0].lower()
                ended[what] = ended.get(what, 0) + 1
            time.sleep(chaos.uniform(0.1, 0.6))
    faults.measured["terminated_sessions"] = ended
    late = time.time()
    pids = {w.pid for w in workers.values()}
    wait_until(
        lambda: {r.pid for r in read_ledger(faults.ledger) if r.at > late} == pids,
        30,
        "both workers to run jobs again",
    )
    acked = finish(faults, submitter, acks, stop)
    assert len(acked) >= 100
    assert sum(ended.values()) >= 10, f"too few sessions were terminated: {ended}"
    for w in workers.values():
        assert w.proc.poll() is None, f"worker {w.name} exited"
        assert "Traceback" not in w.text()


def test_server_restarted_under_load_loses_no_acknowledged_job(
    pg_outage: Faults, postgres_server: PostgresServer, chaos: random.Random
) -> None:
    """The private cluster is crashed (``pg_ctl stop -m immediate``) twice under two workers and
    a submitter, down 0.5 to 3 s (seeded), and started again on the same port and data."""
    faults = pg_outage
    workers = [faults.start("w1"), faults.start("w2")]
    submitter, acks, stop = start_submitter(faults, 6000)
    wait_until(at_least(acks, 150), 30, "150 acknowledged submits")
    for _ in range(2):
        postgres_server.stop("immediate")
        down = faults.note_fault("outage", None, time.time())
        time.sleep(chaos.uniform(0.5, 3.0))  # the outage itself, not a wait for anything
        acked_before = len(acknowledged(acks))
        postgres_server.start()
        down.end = restarted = time.time()

        def both_work_again(since: float = restarted, acked: int = acked_before) -> bool:
            late = {r.pid for r in read_ledger(faults.ledger) if r.at > since}
            return late == {w.pid for w in workers} and len(acknowledged(acks)) >= acked + 100

        wait_until(both_work_again, 40, "both workers to run jobs and 100 more submits")
    acked = finish(faults, submitter, acks, stop)
    faults.measured["failed_submit_tries"] = submitter.text().count("submit failed")
    assert len(acked) >= 350
    for w in workers:
        assert w.proc.poll() is None, f"worker {w.name} exited"
        assert "Traceback" not in w.text()
