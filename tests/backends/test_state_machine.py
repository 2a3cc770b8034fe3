"""Random operation sequences: every backend must behave exactly like the reference model.

A hypothesis state machine drives the backend under test and a :class:`MemoryBackend` (the
model) with the same operations on one shared manual clock, and after every step checks that
both agree on every job and that the invariants hold: finished jobs never change, tokens never
go down, a job has at most one live lease, and histories follow the transition table.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from offload.backends.base import Backend
from offload.backends.memory import MemoryBackend
from offload.core.clock import ManualClock
from offload.core.job import JobFilter, JobRecord, Lease, NewJob, Transition
from offload.core.states import TERMINAL_STATES, TRANSITIONS, State
from offload.errors import InvalidTransition, JobNotFound, LeaseLost

if TYPE_CHECKING:
    from .conftest import BackendFactory

T = TypeVar("T")

QUEUES = ("a", "b")
SETTINGS = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,  # the same sequences on every run: no flaky CI
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
#: Errors the contract allows an operation to raise; both sides must raise the same one.
EXPECTED_ERRORS = (LeaseLost, InvalidTransition, JobNotFound)

Outcome = tuple[str, Any]  # ("ok", a comparable summary) or ("error", the exception type)


def summary(record: JobRecord) -> tuple[Any, ...]:
    """What both sides must agree on for each job."""
    return (
        record.id,
        record.status,
        record.attempts,
        record.losses,
        record.token,
        record.cancel_requested,
        round(record.run_at, 3),
        None if record.lease_until is None else round(record.lease_until, 3),
    )


class BackendAgreesWithModel(RuleBasedStateMachine):
    """Drives ``backend`` (built by ``factory``) and the model in lockstep."""

    factory: BackendFactory
    workdir: Path

    jobs = Bundle("jobs")
    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()  # a private event loop, closed in teardown
        self.clock = ManualClock()
        self.model = MemoryBackend(clock=self.clock)
        self.backend: Backend | None = None
        self.backend = type(self).factory(
            Path(tempfile.mkdtemp(dir=type(self).workdir)), self.clock
        )
        self.run(self.backend.open())
        self.job_ids: list[str] = []
        self.handed_out: list[Lease] = []
        self.last_seen: dict[str, JobRecord] = {}
        self.serial = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def teardown(self) -> None:
        try:
            if self.backend is not None:
                self.run(self.backend.close())
            self.run(self.model.close())
        finally:
            self.runner.close()

    @property
    def sut(self) -> Backend:
        assert self.backend is not None
        return self.backend

    def next_id(self) -> str:
        self.serial += 1
        return f"{self.serial:032x}"

    def both(
        self,
        op: Callable[[Backend], Awaitable[T]],
        summarize: Callable[[T], Any] = lambda value: value,
    ) -> Outcome:
        """Run ``op`` on the model, then on the backend; both must have the same outcome."""
        expected = self.outcome(self.model, op, summarize)
        got = self.outcome(self.sut, op, summarize)
        assert got == expected, f"backend gave {got!r}, the model {expected!r}"
        return got

    def outcome(
        self,
        backend: Backend,
        op: Callable[[Backend], Awaitable[T]],
        summarize: Callable[[T], Any],
    ) -> Outcome:
        async def call() -> T:
            return await op(backend)

        try:
            return ("ok", summarize(self.run(call())))
        except EXPECTED_ERRORS as exc:
            return ("error", type(exc))

    # -- rules ---------------------------------------------------------------------------------
    @rule(
        target=jobs,
        delay=st.sampled_from([0.0, 0.0, 5.0, 30.0]),
        priority=st.integers(0, 2),
        queue=st.sampled_from(QUEUES),
    )
    def submit(self, delay: float, priority: int, queue: str) -> str:
        new = NewJob(
            id=self.next_id(),
            task="t",
            args=[],
            kwargs={},
            queue=queue,
            priority=priority,
            delay=delay,
        )
        self.both(lambda b: b.submit([new]), lambda records: [summary(r) for r in records])
        self.job_ids.append(new.id)
        return new.id

    @rule(
        target=leases,
        # Claims that can take nothing are left out: whether they still promote due jobs is
        # not part of the contract (the contract suite checks that they return nothing).
        caps=st.dictionaries(st.sampled_from(QUEUES), st.integers(0, 3), min_size=1).filter(
            lambda caps: max(caps.values()) > 0
        ),
        limit=st.integers(1, 4),
        lease_seconds=st.sampled_from([10.0, 30.0]),
        idle=st.booleans(),
    )
    def claim(self, caps: dict[str, int], limit: int, lease_seconds: float, idle: bool) -> Any:
        worker = f"w{self.next_id()[-6:]}"
        _, claimed = self.both(
            lambda b: b.claim(worker, caps, limit, lease_seconds, idle=idle),
            lambda records: [summary(r) for r in records],
        )
        new = [Lease(job_id, token) for job_id, _, _, _, token, *_ in claimed]
        self.handed_out.extend(new)
        return multiple(*new)

    @rule(lease=leases, lease_seconds=st.sampled_from([None, 10.0, 30.0]))
    def renew(self, lease: Lease, lease_seconds: float | None) -> None:
        self.both(lambda b: b.renew("w", [lease], lease_seconds))

    @rule(lease=leases)
    def progress(self, lease: Lease) -> None:
        self.both(lambda b: b.progress(lease, 0.5, "half"))

    @rule(lease=leases)
    def complete(self, lease: Lease) -> None:
        self.both(lambda b: b.complete(lease, {"ok": True}))

    @rule(lease=leases, retry_in=st.sampled_from([None, 0.0, 5.0]))
    def fail(self, lease: Lease, retry_in: float | None) -> None:
        error = {"type": "E", "message": "boom"}
        self.both(lambda b: b.fail(lease, error, retry_in=retry_in))

    @rule(lease=leases)
    def release(self, lease: Lease) -> None:
        self.both(lambda b: b.release(lease))

    @rule(lease=leases)
    def mark_cancelled(self, lease: Lease) -> None:
        self.both(lambda b: b.mark_cancelled(lease))

    @rule(job_id=jobs)
    def cancel(self, job_id: str) -> None:
        self.both(lambda b: b.cancel(job_id), summary)

    @rule()
    def cancel_unknown(self) -> None:
        self.both(lambda b: b.cancel("f" * 32), summary)

    @rule()
    def reap(self) -> None:
        self.both(lambda b: b.reap())

    @rule(seconds=st.sampled_from([1.0, 5.0, 10.0, 30.0, 60.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # -- invariants ----------------------------------------------------------------------------
    @invariant()
    def agrees_with_the_model_and_keeps_its_invariants(self) -> None:
        expected = self.all_jobs(self.model)
        got = self.all_jobs(self.sut)
        assert set(got) == set(expected) == set(self.job_ids)
        for job_id, now in got.items():
            assert summary(now) == summary(expected[job_id])
            before = self.last_seen.get(job_id)
            if before is not None:
                assert now.token >= before.token, f"token of {job_id} went down"
                if before.status in TERMINAL_STATES:
                    assert now == before, f"finished job {job_id} changed"
            if now != before:
                self.check_history(now)
            self.last_seen[job_id] = now
        self.check_live_leases(got)

    def all_jobs(self, backend: Backend) -> dict[str, JobRecord]:
        page = self.run(backend.list_jobs(JobFilter(limit=10_000)))
        assert page.next_cursor is None
        return {job.id: job for job in page.jobs}

    def check_history(self, job: JobRecord) -> None:
        """Same steps as the model, each allowed by the table, ending in the job's state."""
        history = self.run(self.sut.history(job.id))
        expected = self.run(self.model.history(job.id))
        assert [step(e) for e in history] == [step(e) for e in expected]
        previous: State | None = None
        for entry in history:
            assert entry.from_status == previous
            assert entry.to_status in TRANSITIONS[previous]
            previous = entry.to_status
        assert previous == job.status

    def check_live_leases(self, jobs: dict[str, JobRecord]) -> None:
        """At most one of the leases ever handed out for a job is still held."""
        live: dict[str, int] = {}
        for lease in self.handed_out:
            if jobs[lease.job_id].status is not State.RUNNING:
                continue  # only a running job can have a live lease (the rules check the rest)
            if lease.job_id not in self.run(self.sut.renew("w", [lease], None)).lost:
                live[lease.job_id] = live.get(lease.job_id, 0) + 1
        assert all(count == 1 for count in live.values()), live


def step(entry: Transition) -> tuple[Any, ...]:
    return (
        entry.from_status,
        entry.to_status,
        entry.reason,
        entry.attempt,
        entry.token,
        entry.worker_id,
    )


# A passing run takes seconds; shrinking a failure against a durable backend takes longer.
@pytest.mark.timeout(300)
def test_backend_agrees_with_the_model(backend_factory: BackendFactory, tmp_path: Path) -> None:
    machine = type(
        "Machine",
        (BackendAgreesWithModel,),
        {"factory": staticmethod(backend_factory), "workdir": tmp_path},
    )
    run_state_machine_as_test(machine, settings=SETTINGS)
