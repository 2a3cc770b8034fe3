"""``memory://``: the reference backend, in plain Python.

It defines the semantics the other backends must match (the contract suite and the property
tests compare them against it) and serves users' unit tests. State lives in this object only:
share one instance to share jobs. Safe to call from several threads and event loops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from offload.backends._common import (
    check_new_job,
    check_retry_in,
)
from offload.backends._gate import Gate
from offload.backends.memory.reads import MemoryReads
from offload.backends.memory.retention import retention_due
from offload.backends.memory.store import copy_json
from offload.core.job import (
    JobRecord,
    Lease,
    NewJob,
    RenewResult,
)
from offload.core.retention import RetentionPolicy
from offload.core.states import TERMINAL_STATES, Reason, State
from offload.errors import InvalidTransition, JobNotFound


class MemoryBackend(MemoryReads):
    """Jobs in a dict, guarded by one lock (the state is in :mod:`.store`, the reads in
    :mod:`.reads`, the writes here)."""

    async def submit(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        for job in jobs:
            check_new_job(job)
        with self._lock:
            stored, fresh = self._submit(jobs, self.clock.now())
        if fresh:
            self._wake()
        return stored

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
                        deferred = replace(
                            job, status=State.SCHEDULED, run_at=float(verdict), updated_at=now
                        )
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
                error=copy_json(error),
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
            result=copy_json(result),
            error=copy_json(error),
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

    async def prune(self, limit: int = 500, policy: RetentionPolicy | None = None) -> int:
        with self._lock:
            now = self.clock.now()
            expired = sorted((at, job_id) for job_id, at in self._expires.items() if at <= now)
            due = [job_id for _, job_id in expired[:limit]]
            if policy is not None and len(due) < limit:
                ended = [j for j in self._jobs.values() if j.status in TERMINAL_STATES]
                ended.sort(key=lambda j: (j.finished_at or 0.0, j.id))
                due += retention_due(ended, set(self._ttl), set(due), policy, now)
            for job_id in due[:limit]:
                del self._jobs[job_id]
                self._expires.pop(job_id, None)
                self._ttl.pop(job_id, None)
                self._limits.pop(job_id, None)
                self._history.pop(job_id, None)
            return len(due[:limit])
