"""The memory backend's state: its dicts under one lock, and the moves every operation shares
(store a transition, record its history, wake the idle waiters)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from offload.backends._common import (
    check_transition,
)
from offload.backends._gate import Gate, Slot, slot_names
from offload.backends.base import CANCEL_INSTEAD, DEFAULT_MAX_LOSSES, IDEMPOTENCY_WINDOW
from offload.core.clock import Clock, SystemClock
from offload.core.codec import dumps, loads
from offload.core.job import (
    JobRecord,
    Lease,
    NewJob,
    Transition,
    WorkerInfo,
)
from offload.core.limits import Limits
from offload.core.states import TERMINAL_STATES, Reason, State
from offload.errors import IdempotencyConflict, LeaseLost


class MemoryStore:
    """The jobs, their histories and the other tables of one memory backend, and the helpers
    that change them; the caller holds ``_lock`` unless a helper says otherwise."""

    def __init__(self, *, clock: Clock | None = None, max_losses: int = DEFAULT_MAX_LOSSES) -> None:
        self.url = "memory://"
        self.clock = clock or SystemClock()
        self.max_losses = max_losses
        self._lock = threading.Lock()
        self._jobs: dict[str, JobRecord] = {}
        self._history: dict[str, list[Transition]] = {}
        self._idempotency: dict[str, tuple[str, str | None, float]] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}  # id -> (info, expires at)
        self._ttl: dict[str, float] = {}  # job id -> result_ttl, for jobs that have one
        self._limits: dict[str, Limits] = {}  # job id -> its task's limits, for limited jobs
        self._reserved: set[str] = set()  # deferred jobs whose rate-limited start is reserved
        self._buckets: dict[str, float] = {}  # rate bucket -> next allowed start
        self._expires: dict[str, float] = {}  # ended job id -> when prune may delete it

    def _submit(
        self, jobs: Sequence[NewJob], now: float
    ) -> tuple[list[JobRecord], dict[str, JobRecord]]:
        """Store new jobs (all or none: every check comes before the first write); the caller
        holds the lock. Returns every job as stored, and the ones stored now."""
        stored: list[JobRecord] = []
        fresh: dict[str, JobRecord] = {}
        keys: dict[str, tuple[str, str | None, float]] = {}
        for new in jobs:
            existing = self._idempotent_match(new, now, keys, fresh)
            if existing is not None:
                stored.append(existing)
                continue
            run_at = new.run_at if new.run_at is not None else now + max(0.0, new.delay)
            status = State.SCHEDULED if run_at > now else State.QUEUED
            record = JobRecord(
                id=new.id,
                task=new.task,
                queue=new.queue,
                status=status,
                args=copy_json(new.args),
                kwargs=copy_json(new.kwargs),
                priority=new.priority,
                attempts=0,
                losses=0,
                run_at=run_at,
                created_at=now,
                updated_at=now,
                idempotency_key=new.idempotency_key,
                concurrency_key=new.concurrency_key,
                tenant=new.tenant,
                meta=copy_json(new.meta),
            )
            if record.id in self._jobs or record.id in fresh:
                raise ValueError(f"job id {record.id} already exists")
            stored.append(record)
            fresh[record.id] = record
            if new.idempotency_key is not None:
                keys[self._idem_key(new)] = (new.id, new.fingerprint, now + IDEMPOTENCY_WINDOW)
        self._idempotency.update(keys)
        for record in fresh.values():
            self._jobs[record.id] = record
            self._record(record, None, Reason.SUBMITTED, now)
        for new in jobs:
            if new.id in fresh and new.result_ttl is not None:
                self._ttl[new.id] = new.result_ttl
            if new.id in fresh and new.limits is not None:
                self._limits[new.id] = new.limits
        return stored, fresh

    def _idem_key(self, new: NewJob) -> str:
        return f"{new.tenant}\x00{new.idempotency_key}"

    def _idempotent_match(
        self,
        new: NewJob,
        now: float,
        pending_keys: dict[str, tuple[str, str | None, float]],
        pending_jobs: dict[str, JobRecord],
    ) -> JobRecord | None:
        if new.idempotency_key is None:
            return None
        key = self._idem_key(new)
        entry = pending_keys.get(key) or self._idempotency.get(key)
        if entry is None or entry[2] <= now:
            return None
        job_id, fingerprint, _ = entry
        job = pending_jobs.get(job_id) or self._jobs.get(job_id)
        if job is None:  # pruned: the key no longer protects anything, whatever the request
            return None
        if fingerprint != new.fingerprint:
            raise IdempotencyConflict(new.idempotency_key, job_id)
        return job

    def _running_in(self, slot: Slot) -> int:
        """Running capped jobs that hold ``slot`` (see offload.backends._gate)."""
        return sum(
            1
            for job_id, limits in self._limits.items()
            if (job := self._jobs.get(job_id)) is not None
            and job.status is State.RUNNING
            and any(s.name == slot.name for s in slot_names(job.task, job.concurrency_key, limits))
        )

    def _promote_due(self, now: float) -> None:
        for job in list(self._jobs.values()):
            if job.status is State.SCHEDULED and job.run_at <= now:
                self._store(
                    job, replace(job, status=State.QUEUED, updated_at=now), Reason.PROMOTED, now
                )

    @staticmethod
    def _holds(job: JobRecord, lease: Lease, now: float) -> bool:
        return (
            job.status is State.RUNNING
            and job.token == lease.token
            and job.lease_until is not None
            and job.lease_until > now
        )

    def _owned(self, lease: Lease, now: float) -> JobRecord:
        job = self._jobs.get(lease.job_id)
        if job is None or not self._holds(job, lease, now):
            raise LeaseLost(lease.job_id, lease.token)
        return job

    def _cancel_instead(
        self, job: JobRecord, now: float, *, run: JobRecord | None = None
    ) -> JobRecord:
        """A running job that would run again, but whose cancel was requested: cancel it."""
        record = replace(
            job, status=State.CANCELLED, lease_until=None, finished_at=now, updated_at=now
        )
        check_transition(job.id, State.RUNNING, State.CANCELLED)
        self._jobs[job.id] = record
        self._ended(record, now)
        if self._capped(job.id):
            self._wake_locked()
        self._record(
            record, State.RUNNING, Reason.CANCELLED, now, detail=CANCEL_INSTEAD, run=run or job
        )
        return record

    def _ended(self, job: JobRecord, now: float) -> None:
        """Start the retention clock of a job that just ended (if it has a result_ttl)."""
        ttl = self._ttl.get(job.id)
        if ttl is not None and job.status in TERMINAL_STATES:
            self._expires[job.id] = now + ttl

    def _store(
        self,
        before: JobRecord,
        after: JobRecord,
        reason: Reason,
        now: float,
        *,
        detail: str | None = None,
    ) -> None:
        check_transition(before.id, before.status, after.status)
        self._jobs[after.id] = after
        self._ended(after, now)
        if before.status is State.RUNNING and self._capped(after.id):
            self._wake_locked()  # a slot is free: a job waiting for it may start
        # A move out of running is recorded with the run that ended: its attempt (before a
        # release refunds it), token and worker.
        run = before if before.status is State.RUNNING else after
        self._record(after, before.status, reason, now, detail=detail, run=run)

    def _record(
        self,
        job: JobRecord,
        before: State | None,
        reason: Reason,
        now: float,
        *,
        detail: str | None = None,
        run: JobRecord | None = None,
    ) -> None:
        run = run or job
        if before is None:
            check_transition(job.id, None, job.status)
        self._history.setdefault(job.id, []).append(
            Transition(
                job.id,
                now,
                before,
                job.status,
                reason,
                run.attempts,
                run.token,
                run.worker_id,
                detail,
            )
        )

    def _capped(self, job_id: str) -> bool:
        limits = self._limits.get(job_id)
        return limits is not None and limits.capped

    def _waits_for_slot(self, gate: Gate, job: JobRecord) -> bool:
        limits = self._limits.get(job.id)
        return limits is not None and gate.full(job.task, job.concurrency_key, limits)

    def _wake(self) -> None:
        with self._lock:
            self._wake_locked()

    def _wake_locked(self) -> None:
        waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)


def copy_json(value: Any) -> Any:
    """A private JSON copy: stored values never alias the caller's, and must be JSON."""
    return loads(dumps(value))


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
