"""The lease keeper: renews a worker's leases from its own thread, loop and connection.

Job code cannot starve it: a coroutine that blocks the worker's event loop, or a thread that
holds the GIL in pure Python, does not stop renewal. It also polls for cancel requests and reaps
expired leases of other (dead) workers. When renewal keeps failing (the backend is unreachable),
it fences itself: a job whose lease must be presumed expired is reported lost, so the worker
stops it before another worker can have claimed it.

It heartbeats every ``heartbeat_interval`` seconds; a worker silent for ``dead_after`` seconds is
dead, and every live worker reclaims such a worker's jobs at once (``Backend.reclaim_dead``)
instead of waiting for their leases to expire. The same fencing covers that: a worker that could
not heartbeat for ``dead_after`` seconds stops its jobs before another worker can reclaim them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from offload.backends import Backend
from offload.core.job import Lease, WorkerInfo
from offload.core.retention import RetentionPolicy
from offload.settings import Settings
from offload.worker.failure import describe

#: Seconds one prune sweep may go on, batch after batch, before the thread renews leases again.
PRUNE_BUDGET = 0.25
log = logging.getLogger("offload.worker")

#: Fence this long before the presumed expiry, to leave room for clock drift and latency.
SAFETY_MARGIN = 0.1


@dataclass
class _Held:
    lease: Lease
    valid_until: float  # time.monotonic() by which the lease surely expired without renewal


class LeaseKeeper:
    """Background thread that keeps the worker's leases alive and reports what it learns.

    ``on_lost(job_id)`` and ``on_cancel(job_id)`` are called from the keeper thread; the worker
    hands them to its own loop.
    """

    def __init__(
        self,
        backend: Backend,
        worker_id: str,
        settings: Settings,
        *,
        on_lost: Callable[[str], None],
        on_cancel: Callable[[str], None],
        describe: Callable[[], WorkerInfo] | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        self._backend = backend
        self._retention = settings.retention() if retention is None else retention
        self._worker_id = worker_id
        self._settings = settings
        self._on_lost = on_lost
        self._on_cancel = on_cancel
        self._describe = describe
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loop_ref: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="offload-leases", daemon=True)
        # time.monotonic() by which the worker surely counts as dead without a new heartbeat
        self._alive_until = float("inf") if describe is None else float("-inf")
        self.reaped = 0  # jobs of dead workers and expired leases reclaimed (a metric reads it)
        self.pruned = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        loop, wakeup = self._loop_ref, self._wakeup
        if loop is not None and wakeup is not None:
            try:
                loop.call_soon_threadsafe(wakeup.set)
            except RuntimeError:
                pass  # its loop already finished
        if self._thread.is_alive():
            self._thread.join()

    def track(self, lease: Lease, claimed_at: float) -> None:
        """Keep ``lease`` alive; ``claimed_at`` is time.monotonic() before the claim was sent."""
        with self._lock:
            self._held[lease.job_id] = _Held(lease, claimed_at + self._settings.lease_seconds)

    def alive_since(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (time.monotonic()) was recorded by the backend."""
        with self._lock:
            self._alive_until = max(self._alive_until, sent_at + self._settings.dead_after)

    def holds(self, job_id: str) -> bool:
        """Whether this worker surely still owns ``job_id``: its lease is tracked, and neither
        the lease nor the worker's heartbeat can have lapsed yet (the fencing horizon)."""
        with self._lock:
            held = self._held.get(job_id)
            horizon = (
                self._alive_until if held is None else min(self._alive_until, held.valid_until)
            )
        return held is not None and time.monotonic() < horizon - SAFETY_MARGIN

    def heartbeat_fresh(self) -> bool:
        """Whether other workers surely still count this worker as alive."""
        with self._lock:
            return time.monotonic() < self._alive_until - SAFETY_MARGIN

    def untrack(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)

    def _snapshot(self) -> list[_Held]:
        with self._lock:
            return list(self._held.values())

    # -- thread side ---------------------------------------------------------------------------
    def _main(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        s = self._settings
        self._wakeup = asyncio.Event()
        self._loop_ref = asyncio.get_running_loop()
        await self._backend.open()
        try:
            next_renew = next_reap = next_beat = time.monotonic()
            next_prune = next_reap + s.prune_interval
            tick = min(s.cancel_poll, s.renew_interval, s.reap_interval, s.heartbeat_interval)
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    next_beat = now + s.heartbeat_interval
                    await self._heartbeat(s.dead_after)
                    await self._reclaim(s.dead_after)
                if now >= next_renew:
                    next_renew = now + s.renew_interval
                    await self._renew(s.lease_seconds)
                else:
                    await self._renew(None)
                self._fence()
                if now >= next_reap:
                    next_reap = now + s.reap_interval
                    await self._reap()
                self._fence()
                if s.prune_interval > 0 and now >= next_prune:
                    next_prune = now + s.prune_interval
                    if await self._prune(s.prune_batch):
                        next_prune = now  # a backlog: go on at the next tick
                    self._fence()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), tick)
                except TimeoutError:
                    pass
        finally:
            await self._heartbeat(0)  # a clean stop: leave the list of live workers at once
            await self._backend.close()

    async def _heartbeat(self, ttl: float) -> None:
        if self._describe is None:
            return
        sent_at = time.monotonic()
        try:
            await asyncio.wait_for(
                self._backend.heartbeat(self._describe(), ttl=ttl), self._patience()
            )
        except Exception as exc:
            log.warning("worker heartbeat failed: %s", _reason(exc))
            return
        if ttl > 0:
            self.alive_since(sent_at)

    async def _reclaim(self, grace: float) -> None:
        """Give back the jobs of workers that stopped heartbeating (they died)."""
        try:
            reaped = await asyncio.wait_for(self._backend.reclaim_dead(grace), self._patience())
        except Exception as exc:
            log.warning("reclaiming dead workers' jobs failed: %s", _reason(exc))
            return
        if reaped:
            log.warning("reclaimed %d job(s) of dead worker(s)", reaped)
            self.reaped += reaped

    async def _renew(self, lease_seconds: float | None) -> None:
        held = self._snapshot()
        if not held:
            return
        started = time.monotonic()
        # Never wait on a stuck call past the first lease's presumed expiry: fencing comes first.
        try:
            outcome = await asyncio.wait_for(
                self._backend.renew(self._worker_id, [h.lease for h in held], lease_seconds),
                self._patience(),
            )
        except Exception as exc:
            log.warning("lease renewal failed: %s", _reason(exc))
            return
        with self._lock:
            for h in held:
                if lease_seconds is not None and h.lease.job_id not in outcome.lost:
                    h.valid_until = started + lease_seconds
        for job_id in outcome.lost:
            self.untrack(job_id)
            self._on_lost(job_id)
        for job_id in outcome.cancel_requested:
            self._on_cancel(job_id)

    async def _reap(self) -> None:
        try:
            self.reaped += await asyncio.wait_for(self._backend.reap(), self._patience())
        except Exception as exc:
            log.warning("reaping expired leases failed: %s", _reason(exc))

    async def _prune(self, limit: int) -> bool:
        """Delete batches of jobs past their retention for up to PRUNE_BUDGET seconds (the
        thread renews leases too); True if more are due (the next tick goes on)."""
        deadline = time.monotonic() + PRUNE_BUDGET
        pruned = 0
        while True:
            try:
                batch = await asyncio.wait_for(
                    self._backend.prune(limit, self._retention), self._patience()
                )
            except Exception as exc:
                log.warning("pruning expired jobs failed: %s", _reason(exc))
                return False
            pruned += batch
            if batch < limit or time.monotonic() >= deadline:
                break
        self.pruned += pruned
        if pruned:
            log.debug("pruned %d expired job(s)", pruned)
        return batch >= limit

    def _patience(self) -> float:
        """How long a backend call may take before fencing must be checked again."""
        held = self._snapshot()
        if not held:
            return self._settings.renew_interval
        return max(0.05, self._valid_until(held) - time.monotonic() - SAFETY_MARGIN)

    def _valid_until(self, held: list[_Held]) -> float:
        """When the first of ``held`` may be claimed by another worker, at the earliest."""
        with self._lock:
            alive_until = self._alive_until
        return min(alive_until, min(h.valid_until for h in held))

    def _fence(self) -> None:
        now = time.monotonic()
        with self._lock:
            alive_until = self._alive_until
        for h in self._snapshot():
            if now >= min(h.valid_until, alive_until) - SAFETY_MARGIN:
                log.warning(
                    "lease on job %s could not be renewed in time; stopping it", h.lease.job_id
                )
                self.untrack(h.lease.job_id)
                self._on_lost(h.lease.job_id)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return describe(exc)
