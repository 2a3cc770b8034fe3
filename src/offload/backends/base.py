"""The backend seam: the one narrow protocol every store of jobs implements.

All methods are coroutines. Times are taken from the backend's own clock, so that leases and
due times do not depend on the caller's clock. Every state change is checked against
:data:`offload.core.states.TRANSITIONS` and recorded as a :class:`Transition`.
Operations on a running job are conditional on its lease (id, fencing token, state running):
a caller whose lease is gone gets :class:`offload.errors.LeaseLost` and nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

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
from offload.core.retention import RetentionPolicy
from offload.core.states import Reason

#: A job whose lease expired this many times (its worker died each time) fails as worker_lost.
DEFAULT_MAX_LOSSES = 3
#: Recorded when a job that would run again (retry, release, lease expiry) is cancelled instead.
CANCEL_INSTEAD = "cancel was requested; the job is not run again"
#: Idempotency keys name the same job for this long.
IDEMPOTENCY_WINDOW = 24 * 3600.0
#: Jobs one claim carries at most, by default, unless the backend names its own (ClaimBatch).
DEFAULT_CLAIM_BATCH = 32


@runtime_checkable
class ClaimBatch(Protocol):
    """A backend whose claim round trip costs much more than a job's share of it (PostgreSQL: a
    durable commit) names how many jobs one claim carries at most by default;
    ``OFFLOAD_CLAIM_BATCH`` overrides it."""

    claim_batch: int


@runtime_checkable
class BlockingSubmit(Protocol):
    """A backend that can also store new jobs from synchronous code, on the calling thread and
    without an event loop (Redis): the sync face's submit then skips the portal's two thread
    hand-offs. Same contract as :meth:`Backend.submit`; callable once the backend is open.
    Calls of more than ``blocking_max`` jobs go through :meth:`Backend.submit` instead (a bulk
    path of its own, e.g. chunked and pipelined)."""

    blocking_max: int

    def submit_blocking(self, jobs: Sequence[NewJob]) -> list[JobRecord]: ...


@runtime_checkable
class Backend(Protocol):
    """Where jobs live. Implementations: memory, sqlite (and redis)."""

    url: str

    async def open(self) -> None:
        """Connect and prepare storage. Idempotent."""

    async def close(self) -> None:
        """Release connections and threads. Idempotent."""

    async def ping(self) -> None:
        """Return if the backend answers; raise BackendUnavailable if it does not."""

    async def now(self) -> float:
        """The backend's clock (epoch seconds)."""

    async def submit(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """Durably store new jobs (all or none) and return them as stored.

        A job whose idempotency key names a live job submitted within the window returns that
        job instead; with a different fingerprint it raises IdempotencyConflict.
        """

    async def claim(
        self,
        worker_id: str,
        queues: Mapping[str, int],
        limit: int,
        lease_seconds: float,
        *,
        idle: bool = False,
    ) -> list[JobRecord]:
        """Atomically move up to ``limit`` due jobs to running under new leases.

        ``queues`` maps each queue to the most jobs to take from it. Due scheduled jobs are
        promoted first. Order: higher priority first, then earlier due time, then id.

        A *suspect* (a job with ``losses > 0``: its worker vanished while it ran, so it may be
        what killed it) is claimed alone: such a claim returns just that job, and the worker
        runs it only when it holds no other job. An idle worker (``idle=True``) may claim a
        suspect at once; a busy one only after the suspect has waited ``lease_seconds`` (so a
        busy system cannot starve it). Jobs lost together with a poison pill are thus never
        lost with it again. Suspects do not wake ``wait_for_work``.
        """

    async def renew(
        self, worker_id: str, leases: Sequence[Lease], lease_seconds: float | None
    ) -> RenewResult:
        """Extend the given leases (or only inspect them when ``lease_seconds`` is None)."""

    async def progress(self, lease: Lease, fraction: float | None, message: str | None) -> None:
        """Record progress of a running job."""

    # The four outcome writes return nothing: a worker never needs the record back, and a
    # network backend saves reading and decoding it (read it with get() when needed).
    async def complete(self, lease: Lease, result: Any, *, then: Sequence[NewJob] = ()) -> None:
        """running -> succeeded with a JSON result.

        ``then`` (what follows a workflow step) is submitted in the same atomic operation: the
        step's success and its successors are stored together or not at all, so no successor
        can run while the step could still run again. A job of ``then`` whose id exists already
        is left as it is; its idempotency key behaves as in :meth:`submit` (a different
        fingerprint raises IdempotencyConflict and nothing is written). A lost lease raises
        LeaseLost and nothing is written either.
        """

    async def fail(
        self,
        lease: Lease,
        error: dict[str, Any],
        *,
        retry_in: float | None = None,
        reason: Reason = Reason.FAILED,
    ) -> None:
        """running -> failed; or with ``retry_in`` -> queued (0) or scheduled (> 0)."""

    async def mark_cancelled(self, lease: Lease, error: dict[str, Any] | None = None) -> None:
        """running -> cancelled, once the worker has stopped the job."""

    async def release(self, lease: Lease) -> None:
        """running -> queued at once, refunding the attempt (graceful shutdown)."""

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: pending jobs become cancelled; a running job gets cancel_requested.

        Raises JobNotFound, or InvalidTransition for a job already terminal.
        """

    async def reap(self, limit: int = 100) -> int:
        """Return jobs whose lease expired to the queue (or fail them as worker_lost)."""

    async def reclaim_dead(self, grace: float, limit: int = 100) -> int:
        """Reap, before their leases expire, the running jobs of workers that have no live
        heartbeat and claimed them at least ``grace`` seconds ago. Returns 0 when there were
        none, else how many jobs the reap that follows moved. Fenced like ``reap``: the old
        owner's lease is gone."""

    async def prune(self, limit: int = 500, policy: RetentionPolicy | None = None) -> int:
        """Delete up to ``limit`` ended jobs with their history; return how many. Due are,
        in this order: jobs whose ``result_ttl`` ran out since they ended; with a ``policy``,
        jobs without a result_ttl older than its age for their task and outcome; then the
        oldest ended jobs of a queue beyond its ``max_finished``. Without a policy, jobs
        submitted without a result_ttl are kept. Jobs that did not end are never deleted."""

    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""

    async def list_jobs(self, flt: JobFilter) -> Page:
        """Jobs matching the filter, newest first, one page at a time."""

    async def history(self, job_id: str) -> list[Transition]:
        """The recorded transitions of a job, oldest first."""

    async def stats(self) -> list[QueueStats]:
        """Job counts per queue and state."""

    async def heartbeat(self, worker: WorkerInfo, *, ttl: float) -> None:
        """Record that ``worker`` is alive (``last_seen`` = now); forget it after ``ttl``
        seconds without a heartbeat, or at once when ``ttl`` is 0 (a clean stop)."""

    async def workers(self) -> list[WorkerInfo]:
        """Workers whose last heartbeat is younger than their ttl, oldest first."""

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Return early when new work may be claimable; otherwise after ``timeout`` seconds.

        A hint only: callers always claim to find out.
        """
