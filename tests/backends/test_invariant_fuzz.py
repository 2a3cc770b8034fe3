"""A random-operation fuzzer with invariant checks after every step, on every backend (issue 23).

Unlike test_state_machine.py, which compares each backend with the reference model on plain
jobs, this one drives each backend alone through what the model comparison leaves out: capped,
rate-limited, keyed, delayed, TTL and idempotent submits; batched outcomes with stale tokens;
cancel, reap, prune; clock jumps (back as well as forward); numbers that cannot be stored (NaN,
infinities, priorities past 2**53); and job data that vanished under the backend (an evicted
Redis hash, a stray SQLite DELETE). After every step it checks what must always hold; at the end
it drains the backend and checks that every job that was not cancelled or vanished ends.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from offload.backends.base import Backend
from offload.backends.redis import RedisBackend
from offload.backends.sqlite import SQLiteBackend
from offload.core.clock import ManualClock
from offload.core.job import JobFilter, JobRecord, Lease, NewJob
from offload.core.limits import Limits
from offload.core.states import TERMINAL_STATES, TRANSITIONS, State
from offload.errors import IdempotencyConflict, InvalidTransition, JobNotFound, LeaseLost
from rediskit import TEST_REDIS

if TYPE_CHECKING:
    from .conftest import BackendFactory

T = TypeVar("T")

LEASE = 10.0
QUEUES = {"a": 100, "b": 100}
#: The kinds of task a job may belong to, with their global limits.
TASKS: dict[str, Limits | None] = {
    "plain": None,
    "capped": Limits(concurrency=2),
    "keyed": Limits(key_concurrency=1),
    "rated": Limits(rate=2.0),
}
SETTINGS = settings(
    max_examples=20,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,  # the same sequences on every run: no flaky CI
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
BAD_NUMBERS: list[dict[str, Any]] = [
    {"delay": math.nan},
    {"run_at": math.inf},
    {"result_ttl": math.nan},
    {"priority": 2**53 + 1},
    {"limits": Limits(rate=math.inf)},
]


class InvariantFuzzer(RuleBasedStateMachine):
    factory: BackendFactory
    workdir: Path

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.clock = ManualClock()
        self.backend: Backend = type(self).factory(
            Path(tempfile.mkdtemp(dir=type(self).workdir)), self.clock
        )
        self.run(self.backend.open())
        self.serial = 0
        self.submitted: set[str] = set()
        self.vanished: set[str] = set()
        self.leases: list[Lease] = []
        self.last_seen: dict[str, JobRecord] = {}
        self.idempotent: dict[str, tuple[str, str]] = {}  # key -> (job id, fingerprint)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def teardown(self) -> None:
        try:
            self.drain()
        finally:
            try:
                self.run(self.backend.close())
            finally:
                self.runner.close()

    def new_job(self, **fields: Any) -> NewJob:
        self.serial += 1
        fields.setdefault("task", "plain")
        fields.setdefault("queue", "a")
        fields.setdefault("limits", TASKS[fields["task"]])
        return NewJob(id=f"{self.serial:032x}", args=[], kwargs={}, **fields)

    # -- rules ---------------------------------------------------------------------------------
    @rule(
        task=st.sampled_from(sorted(TASKS)),
        queue=st.sampled_from(sorted(QUEUES)),
        key=st.sampled_from([None, "k1", "k2", "k\0x"]),
        delay=st.sampled_from([0.0, 0.0, 3.0, 30.0]),
        priority=st.sampled_from([0, 1, -(2**31), 2**31 - 1]),
        ttl=st.sampled_from([None, 0.0, 5.0]),
        count=st.integers(1, 3),
    )
    def submit(
        self,
        task: str,
        queue: str,
        key: str | None,
        delay: float,
        priority: int,
        ttl: float | None,
        count: int,
    ) -> None:
        jobs = [
            self.new_job(
                task=task,
                queue=queue,
                concurrency_key=key,
                delay=delay,
                priority=priority,
                result_ttl=ttl,
            )
            for _ in range(count)
        ]
        stored = self.run(self.backend.submit(jobs))
        assert [r.id for r in stored] == [j.id for j in jobs]
        self.submitted.update(j.id for j in jobs)

    @rule(key=st.sampled_from(["i1", "i2"]), fingerprint=st.sampled_from(["f1", "f2"]))
    def submit_idempotent(self, key: str, fingerprint: str) -> None:
        job = self.new_job(idempotency_key=key, fingerprint=fingerprint, result_ttl=5.0)
        known = self.idempotent.get(key)
        try:
            [record] = self.run(self.backend.submit([job]))
        except IdempotencyConflict as exc:
            conflict: IdempotencyConflict | None = exc
        else:
            conflict = None
        if conflict is not None:
            assert known is not None
            assert known[1] != fingerprint
            assert conflict.job_id == known[0]
            return
        if known is not None and known[1] == fingerprint and record.id != job.id:
            assert record.id == known[0]  # the same request: the job stored first
        if record.id == job.id:
            self.submitted.add(job.id)
            self.idempotent[key] = (job.id, fingerprint)

    @rule(bad=st.sampled_from(BAD_NUMBERS), good_too=st.booleans())
    def submit_unstorable(self, bad: dict[str, Any], good_too: bool) -> None:
        jobs = [self.new_job(**bad)] + ([self.new_job()] if good_too else [])
        with pytest.raises(ValueError):
            self.run(self.backend.submit(jobs))
        for job in jobs:
            assert self.run(self.backend.get(job.id)) is None

    @rule(limit=st.integers(1, 5), idle=st.booleans())
    def claim(self, limit: int, idle: bool) -> None:
        claimed = self.run(self.backend.claim("w", QUEUES, limit, LEASE, idle=idle))
        assert len(claimed) <= limit
        for record in claimed:
            assert record.status is State.RUNNING
            assert record.id not in self.vanished
            self.leases.append(Lease(record.id, record.token))

    @rule(
        picks=st.lists(st.integers(0, 1000), min_size=1, max_size=4),
        how=st.sampled_from(["complete", "retry", "retry_later", "fail", "release"]),
    )
    def finish_batch(self, picks: list[int], how: str) -> None:
        """Concurrent outcomes (one round trip on Redis), stale tokens included."""
        if not self.leases:
            return
        chosen = [self.leases[i % len(self.leases)] for i in picks]
        calls = [self.outcome(lease, how) for lease in chosen]
        results = self.run(gather(calls))
        for _lease, result in zip(chosen, results, strict=True):
            assert result is None or isinstance(result, LeaseLost), result

    def outcome(self, lease: Lease, how: str) -> Coroutine[Any, Any, None]:
        error = {"type": "E", "message": "boom"}
        if how == "complete":
            return self.backend.complete(lease, {"ok": True})
        if how == "fail":
            return self.backend.fail(lease, error)
        if how == "release":
            return self.backend.release(lease)
        return self.backend.fail(lease, error, retry_in=0.0 if how == "retry" else 4.0)

    @rule(pick=st.integers(0, 1000), delay=st.sampled_from([math.nan, math.inf, -1.0]))
    def retry_unstorable(self, pick: int, delay: float) -> None:
        if not self.leases:
            return
        lease = self.leases[pick % len(self.leases)]
        before = self.run(self.backend.get(lease.job_id))
        with pytest.raises(ValueError):
            self.run(self.backend.fail(lease, {"message": "x"}, retry_in=delay))
        assert self.run(self.backend.get(lease.job_id)) == before

    @rule(pick=st.integers(0, 1000))
    def cancel(self, pick: int) -> None:
        if not self.submitted:
            return
        job_id = sorted(self.submitted)[pick % len(self.submitted)]
        try:
            self.run(self.backend.cancel(job_id))
        except (InvalidTransition, JobNotFound):
            pass

    @rule()
    def reap(self) -> None:
        self.run(self.backend.reap())

    @rule()
    def prune(self) -> None:
        self.run(self.backend.prune())

    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0, 11.0, 40.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(seconds=st.sampled_from([1.0, 5.0]))
    def clock_jumps_back(self, seconds: float) -> None:
        self.clock._now -= seconds  # an NTP step: the backend's clock is not monotonic

    @rule(pick=st.integers(0, 1000))
    def data_vanishes(self, pick: int) -> None:
        """A job's stored data disappears under the backend (eviction, a stray delete)."""
        alive = sorted(self.submitted - self.vanished)
        if not alive or not vanish(self.backend, alive[pick % len(alive)]):
            return
        self.vanished.add(alive[pick % len(alive)])

    # -- invariants ----------------------------------------------------------------------------
    @invariant()
    def holds(self) -> None:
        jobs = self.all_jobs()
        for job_id, now in jobs.items():
            before = self.last_seen.get(job_id)
            if before is not None:
                assert now.token >= before.token, f"token of {job_id} went down"
                if before.status in TERMINAL_STATES:
                    assert now == before, f"finished job {job_id} changed"
            if now != before:
                self.check_history(now)
            self.last_seen[job_id] = now
        for job_id in self.submitted - self.vanished - set(jobs):
            gone = self.last_seen.get(job_id)
            assert gone is not None, f"{job_id} was lost"
            assert gone.status in TERMINAL_STATES, f"{job_id} was lost"
        self.check_caps(jobs)
        if not self.vanished:
            self.check_counts(jobs)

    def all_jobs(self) -> dict[str, JobRecord]:
        page = self.run(self.backend.list_jobs(JobFilter(limit=10_000)))
        return {job.id: job for job in page.jobs if job.id not in self.vanished}

    def check_history(self, job: JobRecord) -> None:
        previous: State | None = None
        for entry in self.run(self.backend.history(job.id)):
            assert entry.to_status in TRANSITIONS[previous], entry
            previous = entry.to_status
        assert previous == job.status

    def check_caps(self, jobs: dict[str, JobRecord]) -> None:
        running = [j for j in jobs.values() if j.status is State.RUNNING]
        by_task = Counter(j.task for j in running)
        assert by_task["capped"] <= 2, by_task
        # Jobs without a concurrency_key are not limited by the key_ options (limits.md).
        by_key = Counter(
            j.concurrency_key for j in running if j.task == "keyed" and j.concurrency_key
        )
        assert all(n <= 1 for n in by_key.values()), by_key

    def check_counts(self, jobs: dict[str, JobRecord]) -> None:
        listed = Counter((j.queue, j.status) for j in jobs.values())
        counted = Counter(
            {
                (s.queue, state): n
                for s in self.run(self.backend.stats())
                for state, n in s.counts.items()
                if n
            }
        )
        assert counted == listed

    # -- the end -------------------------------------------------------------------------------
    def drain(self) -> None:
        """Run everything that is left: each job not cancelled or vanished ends."""
        for _ in range(200):
            self.clock.advance(60.0)
            self.run(self.backend.reap())
            claimed = self.run(self.backend.claim("drain", QUEUES, 50, LEASE, idle=True))
            for record in claimed:
                self.run(self.backend.complete(Lease(record.id, record.token), None))
            jobs = self.all_jobs()
            if all(j.status in TERMINAL_STATES for j in jobs.values()) and not claimed:
                return
        stuck = {j.id: j.status for j in self.all_jobs().values() if not j.is_terminal}
        raise AssertionError(f"jobs that never ended: {stuck}")


async def gather(calls: list[Coroutine[Any, Any, None]]) -> list[BaseException | None]:
    return await asyncio.gather(*calls, return_exceptions=True)


def vanish(backend: Backend, job_id: str) -> bool:
    """Delete a job's stored data behind the backend's back; False where that cannot happen."""
    if isinstance(backend, RedisBackend):
        client = redis.Redis.from_url(TEST_REDIS)
        try:
            client.delete(f"{backend.root}j:{job_id}")
        finally:
            client.close()
        return True
    if isinstance(backend, SQLiteBackend):
        import sqlite3

        conn = sqlite3.connect(backend.path, timeout=10)
        try:
            with conn:
                conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        finally:
            conn.close()
        return True
    return False  # the memory backend holds its jobs in the test's own process


@pytest.mark.timeout(300)
def test_random_operations_keep_every_invariant(
    backend_factory: BackendFactory, tmp_path: Path
) -> None:
    machine = type(
        "Fuzzer",
        (InvariantFuzzer,),
        {"factory": staticmethod(backend_factory), "workdir": tmp_path},
    )
    run_state_machine_as_test(machine, settings=SETTINGS)
