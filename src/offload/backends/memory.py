"""``memory://``: the reference backend, in plain Python.

It defines the semantics the other backends must match (the contract suite and the property
tests compare them against it) and serves users' unit tests. State lives in this object only:
share one instance to share jobs. Safe to call from several threads and event loops.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from offload.backends._common import (
    check_new_job,
    check_retry_in,
    check_transition,
    decode_cursor,
    encode_cursor,
)
from offload.backends._gate import Gate, Slot, slot_names
from offload.backends.base import CANCEL_INSTEAD, DEFAULT_MAX_LOSSES, IDEMPOTENCY_WINDOW
from offload.core.clock import Clock, SystemClock
from offload.core.codec import dumps, loads
from offload.core.job import (
    JobFilter,
    JobRecord,
    Lease,
    NewJob,
    Page,
    QueueStats,
    RenewResult,
    Transition,
    WorkerInfo,
)
from offload.core.limits import Limits
from offload.core.states import TERMINAL_STATES, Reason, State
from offload.errors import IdempotencyConflict, InvalidTransition, JobNotFound, LeaseLost


class MemoryBackend:
    """Jobs in a dict, guarded by one lock."""

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

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def now(self) -> float:
        return self.clock.now()

    # -- writes --------------------------------------------------------------------------------
    async def submit(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        for job in jobs:
            check_new_job(job)
        with self._lock:
            stored, fresh = self._submit(jobs, self.clock.now())
        if fresh:
            self._wake()
        return stored

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
                args=_copy(new.args),
                kwargs=_copy(new.kwargs),
                priority=new.priority,
                attempts=0,
                losses=0,
                run_at=run_at,
                created_at=now,
                updated_at=now,
                idempotency_key=new.idempotency_key,
                concurrency_key=new.concurrency_key,
                tenant=new.tenant,
                meta=_copy(new.meta),
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

    async def claim(
        self,
        worker_id: str,
        queues: Mapping[str, int],
        limit: int,
        lease_seconds: float,
        *,
        idle: bool = False,
    ) -> list[JobRecord]:
        with self._lock:
            now = self.clock.now()
            self._promote_due(now)
            room = {q: n for q, n in queues.items() if n > 0}
            candidates = sorted(
                (j for j in self._jobs.values() if j.status is State.QUEUED and j.queue in room),
                key=lambda j: (-j.priority, j.run_at, j.id),
            )
            claimed: list[JobRecord] = []
            gate = Gate(now, self._running_in, self._buckets.get)
            for job in candidates:
                if len(claimed) >= limit:
                    break
                patient = idle or job.run_at <= now - lease_seconds
                if room[job.queue] <= 0 or (job.losses > 0 and (claimed or not patient)):
                    continue
                limits = self._limits.get(job.id)
                if limits is not None:
                    verdict = gate.decide(
                        job.task, job.concurrency_key, limits, job.id in self._reserved
                    )
                    if verdict is False:
                        continue  # no free slot: it waits, queued; the next job may start
                    if verdict is not True:
                        self._reserved.add(job.id)
                        deferred = replace(job, status=State.SCHEDULED, run_at=float(verdict),
                                           updated_at=now)  # fmt: skip
                        self._store(job, deferred, Reason.RATE_LIMITED, now)
                        continue
                    self._reserved.discard(job.id)
                room[job.queue] -= 1
                record = replace(
                    job,
                    status=State.RUNNING,
                    attempts=job.attempts + 1,
                    token=job.token + 1,
                    worker_id=worker_id,
                    lease_until=now + lease_seconds,
                    started_at=now,
                    updated_at=now,
                    progress=None,
                    progress_message=None,
                )
                self._store(job, record, Reason.CLAIMED, now)
                claimed.append(record)
                if job.losses > 0:  # a suspect runs alone
                    break
            self._buckets.update(gate.buckets)
            return claimed

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

    async def renew(
        self, worker_id: str, leases: Sequence[Lease], lease_seconds: float | None
    ) -> RenewResult:
        lost: set[str] = set()
        cancel: set[str] = set()
        with self._lock:
            now = self.clock.now()
            for lease in leases:
                job = self._jobs.get(lease.job_id)
                if job is None or not self._holds(job, lease, now):
                    lost.add(lease.job_id)
                    continue
                if job.cancel_requested:
                    cancel.add(job.id)
                if lease_seconds is not None:
                    self._jobs[job.id] = replace(job, lease_until=now + lease_seconds)
        return RenewResult(frozenset(lost), frozenset(cancel))

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

    async def progress(self, lease: Lease, fraction: float | None, message: str | None) -> None:
        with self._lock:
            now = self.clock.now()
            job = self._owned(lease, now)
            self._jobs[job.id] = replace(
                job, progress=fraction, progress_message=message, updated_at=now
            )

    async def complete(self, lease: Lease, result: Any, *, then: Sequence[NewJob] = ()) -> None:
        for job in then:
            check_new_job(job)
        with self._lock:
            now = self.clock.now()
            self._owned(lease, now)  # before any write: a lost lease stores nothing
            _, fresh = self._submit([job for job in then if job.id not in self._jobs], now)
            self._end(lease, now, State.SUCCEEDED, Reason.SUCCEEDED, result)
        if fresh:
            self._wake()

    async def fail(
        self,
        lease: Lease,
        error: dict[str, Any],
        *,
        retry_in: float | None = None,
        reason: Reason = Reason.FAILED,
    ) -> None:
        check_retry_in(retry_in)
        if retry_in is None:
            self._finish(lease, State.FAILED, reason, error=error)
            return
        with self._lock:
            now = self.clock.now()
            job = self._owned(lease, now)
            if job.cancel_requested:
                self._cancel_instead(job, now)
                return
            target = State.SCHEDULED if retry_in > 0 else State.QUEUED
            record = replace(
                job,
                status=target,
                run_at=now + retry_in,
                error=_copy(error),
                worker_id=None,
                lease_until=None,
                updated_at=now,
            )
            self._store(job, record, Reason.RETRY, now, detail=error.get("message"))
        self._wake()

    async def mark_cancelled(self, lease: Lease, error: dict[str, Any] | None = None) -> None:
        self._finish(lease, State.CANCELLED, Reason.CANCELLED, error=error)

    def _finish(
        self,
        lease: Lease,
        target: State,
        reason: Reason,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> JobRecord:
        with self._lock:
            return self._end(lease, self.clock.now(), target, reason, result, error)

    def _end(
        self,
        lease: Lease,
        now: float,
        target: State,
        reason: Reason,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> JobRecord:
        """running -> a terminal state; the caller holds the lock."""
        job = self._owned(lease, now)
        record = replace(
            job,
            status=target,
            result=_copy(result),
            error=_copy(error),
            lease_until=None,
            finished_at=now,
            updated_at=now,
        )
        detail = error.get("message") if error else None
        self._store(job, record, reason, now, detail=detail)
        return record

    async def release(self, lease: Lease) -> None:
        with self._lock:
            now = self.clock.now()
            job = self._owned(lease, now)
            if job.cancel_requested:
                self._cancel_instead(job, now)
                return
            record = replace(
                job,
                status=State.QUEUED,
                attempts=job.attempts - 1,
                worker_id=None,
                lease_until=None,
                run_at=now,
                updated_at=now,
            )
            self._store(job, record, Reason.RELEASED, now)
        self._wake()

    async def cancel(self, job_id: str) -> JobRecord:
        with self._lock:
            now = self.clock.now()
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            if job.status in TERMINAL_STATES:
                raise InvalidTransition(job_id, job.status.value, State.CANCELLED.value)
            if job.status is State.RUNNING:
                record = replace(job, cancel_requested=True, updated_at=now)
                self._jobs[job_id] = record
                return record
            record = replace(job, status=State.CANCELLED, finished_at=now, updated_at=now)
            self._store(job, record, Reason.CANCELLED, now)
            return record

    async def reap(self, limit: int = 100) -> int:
        with self._lock:
            now = self.clock.now()
            expired = [
                j
                for j in self._jobs.values()
                if j.status is State.RUNNING and j.lease_until is not None and j.lease_until <= now
            ][:limit]
            for job in expired:
                losses = job.losses + 1
                if job.cancel_requested:
                    self._cancel_instead(replace(job, losses=losses), now, run=job)
                elif losses >= self.max_losses:
                    error = {
                        "type": "WorkerLost",
                        "message": f"the job's worker was lost {losses} times",
                    }
                    record = replace(
                        job,
                        status=State.FAILED,
                        losses=losses,
                        error=error,
                        lease_until=None,
                        finished_at=now,
                        updated_at=now,
                    )
                    self._store(job, record, Reason.WORKER_LOST, now, detail=error["message"])
                else:
                    record = replace(
                        job,
                        status=State.QUEUED,
                        losses=losses,
                        worker_id=None,
                        lease_until=None,
                        run_at=now,
                        updated_at=now,
                    )
                    self._store(job, record, Reason.LEASE_EXPIRED, now)
        if expired:
            self._wake()
        return len(expired)

    async def reclaim_dead(self, grace: float, limit: int = 100) -> int:
        with self._lock:
            now = self.clock.now()
            live = {wid for wid, (_, expires) in self._workers.items() if expires > now}
            dead = [
                j
                for j in self._jobs.values()
                if j.status is State.RUNNING
                and j.lease_until is not None
                and j.lease_until > now
                and j.started_at is not None
                and j.started_at <= now - grace
                and j.worker_id not in live
            ][:limit]
            for job in dead:
                self._jobs[job.id] = replace(job, lease_until=now)
        return await self.reap(limit) if dead else 0

    def _cancel_instead(
        self, job: JobRecord, now: float, *, run: JobRecord | None = None
    ) -> JobRecord:
        """A running job that would run again, but whose cancel was requested: cancel it."""
        record = replace(job, status=State.CANCELLED, lease_until=None, finished_at=now,
                         updated_at=now)  # fmt: skip
        check_transition(job.id, State.RUNNING, State.CANCELLED)
        self._jobs[job.id] = record
        self._ended(record, now)
        if self._capped(job.id):
            self._wake_locked()
        self._record(record, State.RUNNING, Reason.CANCELLED, now, detail=CANCEL_INSTEAD,
                     run=run or job)  # fmt: skip
        return record

    def _ended(self, job: JobRecord, now: float) -> None:
        """Start the retention clock of a job that just ended (if it has a result_ttl)."""
        ttl = self._ttl.get(job.id)
        if ttl is not None and job.status in TERMINAL_STATES:
            self._expires[job.id] = now + ttl

    async def prune(self, limit: int = 500) -> int:
        with self._lock:
            now = self.clock.now()
            due = sorted((at, job_id) for job_id, at in self._expires.items() if at <= now)
            for _, job_id in due[:limit]:
                del self._jobs[job_id], self._expires[job_id], self._ttl[job_id]
                self._limits.pop(job_id, None)
                self._history.pop(job_id, None)
            return len(due[:limit])

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._jobs.get(job_id)

    async def list_jobs(self, flt: JobFilter) -> Page:
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if (flt.status is None or j.status is flt.status)
                and (flt.task is None or j.task == flt.task)
                and (flt.queue is None or j.queue == flt.queue)
                and (flt.tenant is None or j.tenant == flt.tenant)
            ]
        jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        if flt.cursor is not None:
            after = decode_cursor(flt.cursor)
            jobs = [j for j in jobs if (j.created_at, j.id) < after]
        page = jobs[: flt.limit]
        more = len(jobs) > flt.limit
        cursor = encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
        return Page(page, cursor)

    async def history(self, job_id: str) -> list[Transition]:
        with self._lock:
            return list(self._history.get(job_id, []))

    async def stats(self) -> list[QueueStats]:
        counts: dict[str, dict[State, int]] = {}
        with self._lock:
            for job in self._jobs.values():
                per = counts.setdefault(job.queue, {})
                per[job.status] = per.get(job.status, 0) + 1
        return [QueueStats(q, c) for q, c in sorted(counts.items())]

    async def heartbeat(self, worker: WorkerInfo, *, ttl: float) -> None:
        with self._lock:
            now = self.clock.now()
            if ttl <= 0:
                self._workers.pop(worker.id, None)
            else:
                self._workers[worker.id] = (replace(worker, last_seen=now), now + ttl)

    async def workers(self) -> list[WorkerInfo]:
        with self._lock:
            now = self.clock.now()
            live = [info for info, expires in self._workers.values() if expires > now]
        return sorted(live, key=lambda w: (w.started_at, w.id))

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            now = self.clock.now()
            due = [
                j.run_at
                for j in self._jobs.values()
                if j.status is State.SCHEDULED and j.queue in queues
            ]
            gate = Gate(now, self._running_in, self._buckets.get)
            if any(
                j.status is State.QUEUED
                and j.queue in queues
                and j.losses == 0
                and not self._waits_for_slot(gate, j)  # a finished job wakes those
                for j in self._jobs.values()
            ):
                return
            self._waiters.append((loop, fut))
        wait = min([timeout, *(max(0.0, d - now) for d in due)])
        try:
            await asyncio.wait_for(fut, wait)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters = [(lp, f) for lp, f in self._waiters if f is not fut]

    # -- internals -----------------------------------------------------------------------------
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


def _copy(value: Any) -> Any:
    """A private JSON copy: stored values never alias the caller's, and must be JSON."""
    return loads(dumps(value))


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
