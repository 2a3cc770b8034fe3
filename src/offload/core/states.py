"""Job states, their named groups, and the one table of allowed transitions.

Every backend checks a transition against :data:`TRANSITIONS` before it writes it.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where a job is in its life."""

    SCHEDULED = "scheduled"  # waiting for run_at (a delay or a retry backoff)
    QUEUED = "queued"  # ready to be claimed
    RUNNING = "running"  # claimed under a lease
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES: frozenset[State] = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
PENDING_STATES: frozenset[State] = frozenset({State.SCHEDULED, State.QUEUED})
ACTIVE_STATES: frozenset[State] = PENDING_STATES | {State.RUNNING}

#: Allowed moves. ``None`` stands for "not yet stored" (a submit). Terminal states are absorbing.
TRANSITIONS: dict[State | None, frozenset[State]] = {
    None: frozenset({State.SCHEDULED, State.QUEUED}),
    State.SCHEDULED: frozenset({State.QUEUED, State.CANCELLED}),
    State.QUEUED: frozenset({State.RUNNING, State.SCHEDULED, State.CANCELLED}),
    State.RUNNING: frozenset(
        {State.SUCCEEDED, State.FAILED, State.CANCELLED, State.QUEUED, State.SCHEDULED}
    ),
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}


def can_transition(current: State | None, target: State) -> bool:
    """Whether the table allows moving from ``current`` to ``target``."""
    return target in TRANSITIONS[current]


class Reason(StrEnum):
    """Why a transition happened; recorded with every history entry."""

    SUBMITTED = "submitted"
    PROMOTED = "promoted"  # scheduled -> queued when run_at passed
    CLAIMED = "claimed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY = "retry"  # running -> scheduled/queued after a failure with retries left
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    RELEASED = "released"  # running -> queued on graceful shutdown; attempt not charged
    LEASE_EXPIRED = "lease_expired"  # running -> queued by the reaper
    WORKER_LOST = "worker_lost"  # running -> failed: the job lost its worker too many times
    RATE_LIMITED = "rate_limited"  # queued -> scheduled: its start waits for the rate limit
