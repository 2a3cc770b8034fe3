"""What a fault test was promised and what happened: the evidence the history checker reads.

The jobs acknowledged to a submitter, the faults injected, the runs the task code wrote to the
ledger folder (one ``.jsonl`` file per process) and what the backend stored;
:meth:`Ledger.check_history` hands them to :mod:`history`.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import history
from history import Fault, Run, Summary

import offload
from offload import State, Transition
from offload.backends.base import Backend
from offload.core.job import JobFilter, JobRecord

from .processes import T, WorkerProcess, wait_until

#: What the history checker allows on top of lease + reap interval for a lease to be reaped
#: once a fault began (scheduling noise on a loaded two-core machine).
CHECK_SLACK = 2.5


def read_ledger(folder: Path) -> list[Run]:
    """Every run recorded under ``folder`` (one file per process), in no set order.

    A run's ``end`` line is matched to its ``start`` line in the same file; a process killed
    mid-write leaves at most a partial last line, which is skipped.
    """
    runs: list[Run] = []
    for path in sorted(folder.glob("*.jsonl")):
        open_runs: dict[tuple[str, int], int] = {}  # (job, attempt) -> index in runs
        for line in path.read_text().splitlines():
            if not line.endswith("}"):
                continue
            d = json.loads(line)
            key = (d["job"], d["attempt"])
            if d.get("ev", "start") == "start":
                open_runs[key] = len(runs)
                runs.append(Run(d["job"], d["attempt"], d["pid"], d["at"], d.get("worker", 0)))
            elif key in open_runs:
                i = open_runs.pop(key)
                r = runs[i]
                runs[i] = Run(r.job, r.attempt, r.pid, r.at, r.worker, d["at"], d["outcome"])
    return runs


def runs_per_job(runs: Sequence[Run]) -> Counter[str]:
    return Counter(r.job for r in runs)


class Ledger:
    """The evidence part of :class:`~faultkit.orchestration.Faults`: acknowledge, read, check."""

    kind: str
    url: str
    app: offload.App
    ledger: Path
    workers: list[WorkerProcess]
    faults: list[Fault]
    acknowledged: set[str]
    may_be_pending: set[str]
    summary: Summary | None
    lease: float
    reap: float

    def note_fault(
        self,
        kind: str,
        pids: Iterable[int] | None,
        start: float,
        end: float | None = None,
        reapers_back: float | None = None,
    ) -> Fault:
        """Record a fault the test injected (``pids`` None: every process); returns it, so that
        its ``end`` can be set once it is over."""
        fault = Fault(kind, None if pids is None else frozenset(pids), start, end, reapers_back)
        self.faults.append(fault)
        return fault

    def acknowledge(self, ids: Iterable[str]) -> None:
        """Jobs whose submit returned (in another process): the checker wants them ended."""
        self.acknowledged.update(ids)

    def allow_pending(self, *ids: str) -> None:
        """Jobs the test leaves waiting or running on purpose."""
        self.may_be_pending.update(ids)

    def submit(
        self, task: str, *args: Any, options: offload.SubmitOptions | None = None
    ) -> offload.Job:
        """Submit a job by task name from the test process (durably stored on return)."""
        job = self.app.run_sync(self.app.asubmit_name(task, list(args), options=options))
        self.acknowledged.add(job.id)
        return job

    def submit_many(
        self,
        task: str,
        arg_lists: Sequence[list[Any]],
        options: offload.SubmitOptions | None = None,
    ) -> list[str]:
        """Submit one job per argument list, in batches (each batch stored all or none)."""
        app, spec = self.app, self.app.registry.get(task)
        ids: list[str] = []
        for start in range(0, len(arg_lists), 250):
            batch = [
                app.prepare(spec, args, {}, options or offload.SubmitOptions())
                for args in arg_lists[start : start + 250]
            ]
            ids += [job.id for job in app.run_sync(app.asubmit_many(batch))]
        self.acknowledged.update(ids)
        return ids

    def call(self, use: Callable[[Backend], Awaitable[T]]) -> T:
        """Run ``use(backend)`` on the test's own client connection."""

        async def run() -> T:
            return await use(await self.app.backend())

        return self.app.run_sync(run())

    def counts(self) -> Counter[State]:
        """How many jobs are in each state, over all queues."""
        total: Counter[State] = Counter()
        for queue in self.call(lambda b: b.stats()):
            total.update(queue.counts)
        return total

    def wait_all_ended(self, expected: int, timeout: float) -> Counter[State]:
        """Wait until at least ``expected`` jobs exist and none is pending or running."""

        def ended() -> Counter[State] | None:
            counts = self.counts()
            pending = sum(counts[s] for s in (State.SCHEDULED, State.QUEUED, State.RUNNING))
            return counts if pending == 0 and counts.total() >= expected else None

        return wait_until(ended, timeout, f"{expected} jobs to end", interval=0.2)

    def histories(self, ids: Sequence[str]) -> dict[str, list[Transition]]:
        async def read(backend: Backend) -> dict[str, list[Transition]]:
            return {job_id: await backend.history(job_id) for job_id in ids}

        return self.call(read)

    def records(self, ids: Sequence[str]) -> dict[str, offload.JobRecord]:
        async def read(backend: Backend) -> dict[str, offload.JobRecord]:
            found = {job_id: await backend.get(job_id) for job_id in ids}
            missing = [job_id for job_id, rec in found.items() if rec is None]
            assert not missing, f"{len(missing)} jobs are not stored, e.g. {missing[:3]}"
            return {job_id: rec for job_id, rec in found.items() if rec is not None}

        return self.call(read)

    def all_records(self) -> dict[str, JobRecord]:
        """Every stored job, of every tenant."""

        async def read(backend: Backend) -> dict[str, JobRecord]:
            found: dict[str, JobRecord] = {}
            cursor = None
            while True:
                page = await backend.list_jobs(JobFilter(limit=1000, cursor=cursor))
                found.update((r.id, r) for r in page.jobs)
                if page.next_cursor is None:
                    return found
                cursor = page.next_cursor

        return self.call(read)

    def all_histories(self, ids: Sequence[str]) -> dict[str, list[Transition]]:
        async def read(backend: Backend) -> dict[str, list[Transition]]:
            out: dict[str, list[Transition]] = {}
            for start in range(0, len(ids), 16):  # a few at a time: connections are pooled
                chunk = ids[start : start + 16]
                found = await asyncio.gather(*(backend.history(i) for i in chunk))
                out.update(zip(chunk, found, strict=True))
            return out

        return self.call(read)

    def reapers_back(self, fault: Fault) -> float:
        """When, after ``fault`` began, a worker that could sweep expired leases was running:
        one the fault did not touch, or the touched ones once it ended."""
        if fault.reapers_back is not None:
            return fault.reapers_back
        if fault.pids is None:  # every process was touched: until the fault ended
            return math.inf if fault.end is None else fault.end
        times = [] if fault.end is None else [fault.end]
        for w in self.workers:
            if not w.reaps or w.pid in fault.pids:
                continue
            at = max(w.ready_at or w.spawned_at, fault.start)
            if w.died_at is None or w.died_at > at:
                times.append(at)
        return min(times, default=math.inf)

    def check_history(self) -> Summary:
        """Run the history checker (module :mod:`history`) on everything stored and run so far;
        on SQLite, ``PRAGMA integrity_check`` too. Raises AssertionError on any problem."""
        if self.kind == "sqlite":
            self.assert_integrity()
        records = self.all_records()
        summary = history.check(
            history.Evidence(
                records=records,
                histories=self.all_histories(list(records)),
                runs=read_ledger(self.ledger),
                acknowledged=set(self.acknowledged),
                may_be_pending=set(self.may_be_pending),
                faults=list(self.faults),
                stats=self.counts(),
                reapers_back=self.reapers_back,
                lease=self.lease,
                reap=self.reap,
                slack=CHECK_SLACK,
            )
        )
        self.summary = summary
        return summary

    def assert_integrity(self) -> None:
        """SQLite's own check of the database file: pages, indexes, constraints."""
        path = self.url.removeprefix("sqlite:///").partition("?")[0]
        conn = sqlite3.connect(path, timeout=30)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
        assert result == [("ok",)], f"integrity_check of {path}: {result}"
