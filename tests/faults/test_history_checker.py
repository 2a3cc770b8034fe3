"""The history checker itself: it passes a clean story and catches each broken rule.

Pure data in, no processes: a checker that cannot fail would prove nothing after the fault
tests, so every rule is shown failing here on a small made-up history.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import pytest
from history import Evidence, Fault, Run, check

from offload import State, Transition
from offload.core.job import JobRecord
from offload.core.states import Reason

T0 = 1_000.0
LEASE, REAP, SLACK = 1.5, 0.3, 0.5
A, B = 101, 202  # worker pids
WA, WB = f"a-{A}-x", f"b-{B}-y"


def t(
    at: float,
    old: State | None,
    new: State,
    reason: Reason,
    attempt: int = 0,
    token: int = 0,
    worker: str | None = None,
) -> Transition:
    return Transition("j", T0 + at, old, new, reason, attempt, token, worker)


Q, R, S = State.QUEUED, State.RUNNING, State.SUCCEEDED

#: Claimed by A, A killed at 1.0, reaped at 2.5, claimed by B, succeeded.
RERUN = [
    t(0.0, None, Q, Reason.SUBMITTED),
    t(0.1, Q, R, Reason.CLAIMED, 1, 1, WA),
    t(2.5, R, Q, Reason.LEASE_EXPIRED, 1, 1, WA),
    t(2.6, Q, R, Reason.CLAIMED, 2, 2, WB),
    t(2.8, R, S, Reason.SUCCEEDED, 2, 2, WB),
]
KILL_A = Fault("kill", frozenset({A}), T0 + 1.0)
RUNS = [
    Run("j", 1, A, T0 + 0.2, A),  # killed: no end
    Run("j", 2, B, T0 + 2.7, B, T0 + 2.75, "returned"),
]


def record(status: State = S, attempts: int = 2) -> JobRecord:
    return JobRecord(
        id="j",
        task="tally",
        queue="default",
        status=status,
        args=[],
        kwargs={},
        priority=0,
        attempts=attempts,
        losses=1,
        run_at=T0,
        created_at=T0,
        updated_at=T0 + 3,
    )


def evidence(**changes: object) -> Evidence:
    base = Evidence(
        records={"j": record()},
        histories={"j": RERUN},
        runs=RUNS,
        acknowledged={"j"},
        may_be_pending=set(),
        faults=[KILL_A],
        stats=Counter({S: 1}),
        reapers_back=lambda f: f.start,
        lease=LEASE,
        reap=REAP,
        slack=SLACK,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_rerun_explained_by_a_kill_passes_and_is_measured() -> None:
    summary = check(evidence())
    assert (summary.duplicate_runs, summary.expiries) == (1, 1)
    assert summary.duplicates_by == Counter({"lease_expired": 1})
    assert summary.recovery == [pytest.approx(1.6)]  # kill at 1.0, rerun claimed at 2.6


def with_history(*steps: Transition) -> Evidence:
    return evidence(histories={"j": list(steps)})


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (evidence(faults=[]), "expired with no fault injected"),
        (evidence(faults=[replace(KILL_A, pids=frozenset({B}))]), "expired with no fault"),
        (
            with_history(*RERUN[:2], replace(RERUN[2], at=T0 + 3.5), *RERUN[3:]),
            "reaped 2.50s after the kill began; the bound was 2.30s",
        ),
        (evidence(faults=[replace(KILL_A, start=T0 + 0.05)]), "the bound was 2.35s"),
        (evidence(faults=[replace(KILL_A, start=T0 - 5)]), "expired with no fault"),
        (evidence(acknowledged={"j", "gone"}), "job gone: acknowledged but not stored"),
        (evidence(records={"j": record(R)}, stats=Counter({R: 1})), "still running"),
        (evidence(stats=Counter({S: 2})), "queue counts"),
        (with_history(*RERUN[:4], replace(RERUN[4], token=1)), "stale owner's write"),
        (
            with_history(*RERUN[:3], replace(RERUN[3], token=1), replace(RERUN[4], token=1)),
            "does not exceed",
        ),
        (with_history(*RERUN[:3], replace(RERUN[3], attempt=3), RERUN[4]), "claim attempt 3"),
        (with_history(*RERUN, t(3.0, S, Q, Reason.RETRY)), "follows the final state"),
        (
            with_history(
                *RERUN[:2],
                t(0.5, R, S, Reason.SUCCEEDED, 1, 1, WA),
                t(0.6, S, S, Reason.SUCCEEDED, 1, 1, WA),
            ),
            "accepted successes",
        ),
        (with_history(RERUN[0], t(0.1, Q, S, Reason.SUCCEEDED)), "is not allowed"),
        (with_history(RERUN[1]), "not submitted"),
        (evidence(runs=[RUNS[0], RUNS[1], replace(RUNS[1], at=T0 + 2.71)]), "ran twice"),
        (evidence(runs=[replace(RUNS[0], attempt=5), RUNS[1]]), "matches no claim"),
        (evidence(runs=[RUNS[0], replace(RUNS[1], outcome="cancelled")]), "without a run that"),
        (evidence(runs=RUNS, faults=[replace(KILL_A, kind="stop", end=T0 + 5)]), "never ended"),
    ],
)
def test_each_broken_rule_is_caught(broken: Evidence, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check(broken)


def test_runs_overlap_only_after_a_lost_lease() -> None:
    # A frozen owner (SIGSTOP): its run goes on past the rerun's start. Fine: the lease expired.
    stop = Fault("stop", frozenset({A}), T0 + 1.0, end=T0 + 4.0)
    zombie = [replace(RUNS[0], end=T0 + 4.1, outcome="returned"), RUNS[1]]
    check(evidence(runs=zombie, faults=[stop]))
    # The same overlap after a graceful release is a second run while the first still went on.
    released = [
        *RERUN[:2],
        t(0.5, R, Q, Reason.RELEASED, 1, 1, WA),
        replace(RERUN[3], attempt=1),
        RERUN[4],
    ]
    overlapping = [replace(RUNS[0], end=T0 + 4.1, outcome="returned"), replace(RUNS[1], attempt=1)]
    with pytest.raises(AssertionError, match="overlap, but claim 1 ended released"):
        check(
            evidence(histories={"j": released}, runs=overlapping, records={"j": record(attempts=1)})
        )


def test_a_fault_of_everyone_waits_for_its_end_before_reaping_counts_as_late() -> None:
    outage = Fault("outage", None, T0 + 1.0, end=T0 + 5.0)
    late = [
        *RERUN[:2],
        replace(RERUN[2], at=T0 + 5.5),
        replace(RERUN[3], at=T0 + 6.1),
        replace(RERUN[4], at=T0 + 6.3),
    ]
    runs = [
        replace(RUNS[0], end=T0 + 2.0, outcome="cancelled"),
        replace(RUNS[1], at=T0 + 6.2, end=T0 + 6.25),
    ]
    back = evidence(
        histories={"j": late},
        runs=runs,
        faults=[outage],
        reapers_back=lambda f: f.end if f.end is not None else math.inf,
    )
    summary = check(back)
    assert summary.recovery == [pytest.approx(1.1)]  # from Redis back (5.0) to the rerun (6.1)
    with pytest.raises(AssertionError, match="bound was"):
        check(replace(back, reapers_back=lambda f: f.start))
