"""Plain values that cross the backend seam: jobs, submissions, history, pages. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from offload.core.limits import Limits
from offload.core.states import TERMINAL_STATES, Reason, State

DEFAULT_QUEUE = "default"
DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to store: what a submit asks for. Times are resolved by the backend's clock."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    delay: float = 0.0  # seconds from the backend's now; ignored when run_at is set
    run_at: float | None = None  # absolute due time (epoch seconds)
    idempotency_key: str | None = None
    fingerprint: str | None = None  # hash of the request, to detect a reused key (409)
    concurrency_key: str | None = None
    tenant: str = DEFAULT_TENANT
    meta: dict[str, Any] = field(default_factory=dict)
    #: seconds the job (result, error, history) is kept once it ended; None: forever
    result_ttl: float | None = None
    #: the task's global concurrency caps and rate limits, held by the backend
    limits: Limits | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A stored job as read back from a backend: a snapshot, never updated in place."""

    id: str
    task: str
    queue: str
    status: State
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    attempts: int  # runs started and charged (a graceful release refunds its attempt)
    losses: int  # times its lease expired under a worker that vanished
    run_at: float
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    token: int = 0  # fencing token of the latest claim
    worker_id: str | None = None
    lease_until: float | None = None
    progress: float | None = None
    progress_message: str | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    tenant: str = DEFAULT_TENANT
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded state change of a job."""

    job_id: str
    at: float
    from_status: State | None
    to_status: State
    reason: Reason
    attempt: int
    token: int
    worker_id: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on a running job: valid while the token matches and the job runs."""

    job_id: str
    token: int


@dataclass(frozen=True, slots=True)
class RenewResult:
    """What a worker learns when it renews its leases."""

    lost: frozenset[str]  # job ids whose lease is no longer held: stop them, drop their results
    cancel_requested: frozenset[str]  # job ids someone asked to cancel


#: The most jobs one listing returns (pass ``next_cursor`` for more).
MAX_PAGE = 100_000


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs to list. ``cursor`` is the opaque value of a previous page's ``next_cursor``."""

    status: State | None = None
    task: str | None = None
    queue: str | None = None
    tenant: str | None = None
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        limit = self.limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE}, not {limit!r}")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of jobs, newest first."""

    jobs: list[JobRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Job counts of one queue, by state, and how long its oldest ready job has waited."""

    queue: str
    counts: dict[State, int]
    #: seconds since the oldest ready job (queued, or scheduled and due) of the queue became
    #: due, at the backend's clock; None when none is ready. The number to alert on.
    oldest_ready_age: float | None = None

    def count(self, state: State) -> int:
        return self.counts.get(state, 0)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker process, as it last reported itself (heartbeats every renew interval)."""

    id: str  # unique per process incarnation
    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: float
    last_seen: float  # backend clock; set by the backend on every heartbeat
    running: int  # jobs it held at its last heartbeat
    processed: int  # jobs it finished since it started
