"""The memory backend's lifecycle and reads (and the idle wait for work)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from offload.backends._common import (
    decode_cursor,
    encode_cursor,
    ready_age,
)
from offload.backends._gate import Gate
from offload.backends.memory.store import MemoryStore
from offload.core.job import (
    JobFilter,
    JobRecord,
    Page,
    QueueStats,
    Transition,
    WorkerInfo,
)
from offload.core.states import State


class MemoryReads(MemoryStore):
    """What a memory backend answers without changing a job."""

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def now(self) -> float:
        return self.clock.now()

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
        oldest: dict[str, float] = {}  # per queue, the earliest due time of its ready jobs
        with self._lock:
            now = self.clock.now()
            for job in self._jobs.values():
                per = counts.setdefault(job.queue, {})
                per[job.status] = per.get(job.status, 0) + 1
                if job.status is State.QUEUED or (
                    job.status is State.SCHEDULED and job.run_at <= now
                ):
                    oldest[job.queue] = min(job.run_at, oldest.get(job.queue, job.run_at))
        return [QueueStats(q, c, ready_age(now, oldest.get(q))) for q, c in sorted(counts.items())]

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
