"""The history checker: what the backend recorded and what really ran must tell one story.

After every fault test (the ``faults`` fixture calls :func:`check`), three kinds of evidence are
compared: every stored job with its history, the execution ledger (what the ``tally`` tasks wrote
from inside their runs, in files the backend never sees), and the faults the test injected (which
processes it killed, froze or cut off, and when). The rules, as in DESIGN.md section 6:

- every acknowledged job is stored and ended (succeeded, failed or cancelled), unless the test
  said it may still be pending;
- each history starts with ``submitted``, follows the transition table, and nothing follows a
  final state; the job's record agrees with its last transition;
- claims have strictly increasing tokens, and attempts that go up by one (a graceful release
  refunds its attempt); every move out of ``running`` carries the token of the claim it ends;
- at most one accepted success per job;
- every lease that expired is explained by an injected fault that covers the claim's worker, and
  it was reaped within ``lease + reap interval + slack`` of the moment the fault began (or of the
  moment a reaper could run again);
- every run in the ledger belongs to one claim (same attempt, same worker process), and a claim
  has at most one run; a run that never ended was killed (by the test, or by its worker: a
  process-executor child), and ended then; two runs of a job overlap only if the first one's
  lease expired, so that its completion could not be accepted; a success comes from a run that
  returned;
- queue counts agree with the jobs (``stats()``).

(SQLite's ``PRAGMA integrity_check`` is run by ``Faults.check_history`` before this.)

Every duplicate run is counted with the reason the earlier run ended (``lease_expired``,
``released``, ``retry``) in the :class:`Summary`, with recovery times (fault to rerun).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from offload import State, Transition
from offload.core.job import JobRecord
from offload.core.states import TERMINAL_STATES, Reason, can_transition

#: Clock tolerance between the test process, the workers and the backend (one machine).
EPS = 0.5
#: Moves that end a run behind its owner's back (the reaper's).
LOST = (Reason.LEASE_EXPIRED, Reason.WORKER_LOST)


@dataclass
class Fault:
    """Something a test did to processes or to the backend, for the checker to explain leases
    that expired. ``pids`` None means every process (the backend or the network was down)."""

    kind: str  # kill, stop, outage, partition, reset, pause, poison, owner
    pids: frozenset[int] | None
    start: float
    end: float | None = None  # None: the processes never came back (killed)
    #: when a reaper could run again (None: work it out from the worker processes)
    reapers_back: float | None = None

    def covers(self, pid: int | None) -> bool:
        return self.pids is None or pid in self.pids


@dataclass(frozen=True)
class Run:
    """One run of a job, as the ledger tasks wrote it (``end`` None: it never finished)."""

    job: str
    attempt: int
    pid: int  # the process that ran the code (a process-executor child, or the worker)
    at: float  # start, real wall clock
    worker: int = 0  # the worker process that claimed it
    end: float | None = None
    outcome: str | None = None  # returned | cancelled

    def __post_init__(self) -> None:
        if not self.worker:
            object.__setattr__(self, "worker", self.pid)


@dataclass
class Evidence:
    """Everything the checker compares."""

    records: dict[str, JobRecord]
    histories: dict[str, list[Transition]]
    runs: Sequence[Run]
    acknowledged: set[str]
    may_be_pending: set[str]
    faults: Sequence[Fault]
    stats: Counter[State]
    #: when, after a fault, some worker that could reap expired leases was running again
    reapers_back: Callable[[Fault], float]
    lease: float
    reap: float
    slack: float


@dataclass
class Summary:
    """What a test measured; written to ``$OFFLOAD_FAULT_RESULTS`` for docs/reliability.md."""

    jobs: int = 0
    acknowledged: int = 0
    lost: int = 0
    runs: int = 0
    duplicate_runs: int = 0
    duplicates_by: Counter[str] = field(default_factory=Counter)
    expiries: int = 0
    #: fault began (a fault of the backend or network: it ended) -> the rerun was claimed
    recovery: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        rec = sorted(self.recovery)
        return {
            "jobs": self.jobs,
            "acknowledged": self.acknowledged,
            "lost": self.lost,
            "runs": self.runs,
            "duplicate_runs": self.duplicate_runs,
            "duplicates_by": dict(self.duplicates_by),
            "expiries": self.expiries,
            "recovery_p50": round(statistics.median(rec), 2) if rec else None,
            "recovery_max": round(rec[-1], 2) if rec else None,
            "outcomes": dict(self.outcomes),
        }


class Problems(list[str]):
    def add(self, job: str, message: str) -> None:
        self.append(f"job {job}: {message}")


def check(ev: Evidence) -> Summary:
    """Check every rule above; raise AssertionError listing what broke, else return a Summary."""
    problems = Problems()
    summary = Summary(jobs=len(ev.records), acknowledged=len(ev.acknowledged), runs=len(ev.runs))
    faults = [*ev.faults, *_poison_faults(ev.records, ev.histories)]
    runs_of: dict[str, list[Run]] = {}
    for run in ev.runs:
        runs_of.setdefault(run.job, []).append(run)
    for job_id in sorted(ev.acknowledged - ev.records.keys()):
        problems.add(job_id, "acknowledged but not stored")
        summary.lost += 1
    for job_id in sorted(runs_of.keys() - ev.records.keys()):
        problems.add(job_id, "ran (ledger) but is not stored")
    for job_id, record in ev.records.items():
        summary.outcomes[record.status.value] += 1
        pending = not record.is_terminal and job_id not in ev.may_be_pending
        if job_id in ev.acknowledged and pending:
            problems.add(job_id, f"acknowledged and still {record.status.value}")
            summary.lost += 1
        history = ev.histories.get(job_id, [])
        claims = _check_history(job_id, record, history, problems)
        _check_expiries(job_id, history, claims, faults, ev, problems, summary)
        _check_runs(job_id, record, claims, runs_of.get(job_id, []), faults, problems, summary)
    counted = Counter(r.status for r in ev.records.values())
    if +ev.stats != +counted:
        problems.append(f"queue counts {dict(+ev.stats)} differ from the jobs {dict(+counted)}")
    if problems:
        shown = "\n  ".join(problems[:25])
        more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
        raise AssertionError(f"history check: {len(problems)} problem(s)\n  {shown}{more}")
    return summary


@dataclass
class _Claim:
    """A claim of a job and the transition that ended its run (None: still running)."""

    claim: Transition
    ending: Transition | None = None

    @property
    def pid(self) -> int | None:
        return pid_of(self.claim.worker_id)


def pid_of(worker_id: str | None) -> int | None:
    """The pid in a worker id (``<name>-<pid>-<random>``)."""
    if worker_id is None:
        return None
    try:
        return int(worker_id.rsplit("-", 2)[1])
    except (IndexError, ValueError):
        return None


def _check_history(
    job_id: str, record: JobRecord, history: list[Transition], problems: Problems
) -> list[_Claim]:
    """The shape of one history; returns its claims with the moves that ended them."""
    if not history:
        problems.add(job_id, "has no history")
        return []
    first = history[0]
    if first.reason is not Reason.SUBMITTED or first.from_status is not None:
        problems.add(job_id, f"history starts with {first.reason.value}, not submitted")
    claims: list[_Claim] = []
    state: State | None = None
    last_at = first.at
    for n, t in enumerate(history):
        where = f"transition {n} ({t.reason.value})"
        if n and t.from_status is not state:
            problems.add(job_id, f"{where} leaves {t.from_status} but the job was {state}")
        if state in TERMINAL_STATES:
            problems.add(job_id, f"{where} follows the final state {state}")
        if not can_transition(t.from_status, t.to_status):
            problems.add(job_id, f"{where}: {t.from_status} -> {t.to_status} is not allowed")
        if t.at < last_at - 0.05:
            problems.add(job_id, f"{where} is dated {last_at - t.at:.3f}s before the previous one")
        last_at = max(last_at, t.at)
        if t.reason is Reason.CLAIMED:
            _check_claim(job_id, t, claims, problems)
            claims.append(_Claim(t))
        elif t.from_status is State.RUNNING:
            if not claims or claims[-1].ending is not None:
                problems.add(job_id, f"{where} moves a job out of running that nobody claimed")
            elif t.token != (held := claims[-1].claim.token):
                problems.add(
                    job_id,
                    f"{where} carries token {t.token}, not the claim's {held}: "
                    "a stale owner's write was accepted",
                )
            else:
                claims[-1].ending = t
        state = t.to_status
    if record.status is not state:
        problems.add(job_id, f"is {record.status.value} but its history ends in {state}")
    successes = sum(t.reason is Reason.SUCCEEDED for t in history)
    if successes > 1:
        problems.add(job_id, f"has {successes} accepted successes")
    expected = 0
    if claims:
        last = claims[-1]
        refunded = last.ending is not None and last.ending.reason is Reason.RELEASED
        expected = last.claim.attempt - refunded
    if record.attempts != expected:
        problems.add(job_id, f"counts {record.attempts} attempts; its claims say {expected}")
    return claims


def _check_claim(job_id: str, t: Transition, claims: list[_Claim], problems: Problems) -> None:
    if not claims:
        if t.attempt != 1:
            problems.add(job_id, f"first claim is attempt {t.attempt}")
        return
    prev = claims[-1]
    if t.token <= prev.claim.token:
        problems.add(job_id, f"claim token {t.token} does not exceed {prev.claim.token}")
    refunded = prev.ending is not None and prev.ending.reason is Reason.RELEASED
    want = prev.claim.attempt + (0 if refunded else 1)
    if t.attempt != want:
        ended = prev.ending.reason.value if prev.ending else "still running"
        problems.add(job_id, f"claim attempt {t.attempt} after {prev.claim.attempt} ({ended})")


def _poison_faults(
    records: Mapping[str, JobRecord], histories: Mapping[str, list[Transition]]
) -> Iterable[Fault]:
    """A ``poison`` job kills the worker that claims it: each of its claims is a fault."""
    for job_id, record in records.items():
        if record.task == "poison":
            for t in histories.get(job_id, []):
                pid = pid_of(t.worker_id)
                if t.reason is Reason.CLAIMED and pid is not None:
                    yield Fault("poison", frozenset({pid}), t.at)


def _check_expiries(
    job_id: str,
    history: list[Transition],
    claims: list[_Claim],
    faults: Sequence[Fault],
    ev: Evidence,
    problems: Problems,
    summary: Summary,
) -> None:
    """Every lease that expired is explained by a fault, and reaped within the bound."""
    for n, c in enumerate(claims):
        end = c.ending
        if end is None or end.reason not in LOST:
            continue
        summary.expiries += 1
        covering = [
            f
            for f in faults
            if f.covers(c.pid)
            and c.claim.at <= (f.start if f.end is None else f.end) + EPS
            and f.start <= end.at + EPS
        ]
        if not covering:
            problems.add(
                job_id,
                f"lease of claim {n + 1} (worker {c.claim.worker_id}) expired "
                "with no fault injected on that worker: renewal failed",
            )
            continue
        bounds = {id(f): _bound(f, c.claim.at, ev) for f in covering}
        timely = [f for f in covering if end.at <= bounds[id(f)]]
        if not timely:
            f = max(covering, key=lambda f: f.start)
            took, bound = end.at - f.start, bounds[id(f)] - f.start
            problems.add(
                job_id,
                f"lease of claim {n + 1} was reaped {took:.2f}s after the "
                f"{f.kind} began; the bound was {bound:.2f}s",
            )
            continue
        # The cause: the first fault that struck after the claim (else the last one before it).
        after = [f for f in timely if f.start >= c.claim.at - EPS]
        cause = min(after, key=lambda f: f.start) if after else max(timely, key=lambda f: f.start)
        if n + 1 < len(claims):
            # From the fault, or from the backend answering again after one of its own faults.
            since = cause.end if cause.pids is None and cause.end is not None else cause.start
            summary.recovery.append(claims[n + 1].claim.at - max(since, c.claim.at))


def _bound(f: Fault, claimed_at: float, ev: Evidence) -> float:
    """Latest time the lease may be reaped: it expires one lease after the fault began (or the
    claim, if later), a reaper sweeps within a reap interval once one runs, plus slack."""
    expires = max(f.start, claimed_at) + ev.lease
    return max(expires, ev.reapers_back(f)) + ev.reap + ev.slack


def _check_runs(
    job_id: str,
    record: JobRecord,
    claims: list[_Claim],
    runs: list[Run],
    faults: Sequence[Fault],
    problems: Problems,
    summary: Summary,
) -> None:
    """The ledger against the history: one run per claim, overlaps only after a lost lease."""
    owner: dict[int, Run] = {}  # claim index -> its run
    for run in sorted(runs, key=lambda r: r.at):
        index = _claim_of(run, claims)
        if index is None:
            problems.add(
                job_id,
                f"run (attempt {run.attempt}, worker {run.worker}) matches no claim of its history",
            )
            continue
        if index in owner:
            pids = f"pids {owner[index].pid} and {run.pid}"
            problems.add(job_id, f"claim {index + 1} ran twice ({pids})")
            continue
        owner[index] = run
    ends: dict[int, float] = {}  # claim index -> when its run ended (or was killed)
    for index, run in owner.items():
        end = run.end if run.end is not None else _killed_at(run, claims[index], record, faults)
        if end is None:
            problems.add(
                job_id,
                f"run of claim {index + 1} never ended, but its process {run.pid} was not killed",
            )
        ends[index] = math.inf if end is None else end
    ordered = sorted(owner.items())
    for (i, _), (j, second) in itertools.pairwise(ordered):
        ending = claims[i].ending
        overlap = ends[i] > second.at
        if overlap and (ending is None or ending.reason not in LOST):
            problems.add(
                job_id,
                f"runs of claims {i + 1} and {j + 1} overlap, but claim {i + 1} "
                f"ended {ending.reason.value if ending else 'never'}",
            )
    ledgered = record.task.startswith("tally")
    # A rerun: a run after the job's first one (by the ledger; without one, every later claim).
    # A claim lost before its task started (its reply lost, say) ran nothing: it is no rerun.
    run_claims = sorted(owner) if ledgered else list(range(len(claims)))
    for n in run_claims[1:]:
        previous = claims[n - 1].ending
        summary.duplicate_runs += 1
        summary.duplicates_by[previous.reason.value if previous else "?"] += 1
    for index, c in enumerate(claims):
        if ledgered and c.ending is not None and c.ending.reason is Reason.SUCCEEDED:
            ran = owner.get(index)
            if ran is None or ran.outcome != "returned":
                problems.add(
                    job_id, f"success of claim {index + 1} recorded without a run that returned"
                )


def _claim_of(run: Run, claims: list[_Claim]) -> int | None:
    """The claim a run belongs to: same attempt and worker, the latest one before it started."""
    found = None
    for n, c in enumerate(claims):
        if c.claim.attempt == run.attempt and c.pid == run.worker and c.claim.at <= run.at + EPS:
            found = n
    return found


def _killed_at(run: Run, claim: _Claim, record: JobRecord, faults: Sequence[Fault]) -> float | None:
    """When a run without an end line stopped: its process was killed by the test (a kill
    fault), or by its worker (a process-executor child stopped on cancel, timeout, shutdown or
    a lost lease: by the time the run's end was recorded). ``inf`` while it still runs; None
    if nothing explains it."""
    if claim.ending is None and record.status is State.RUNNING:
        return math.inf
    kills = [
        f.start
        for f in faults
        if f.kind in ("kill", "poison")
        and (f.covers(run.worker) or f.covers(run.pid))
        and f.start >= run.at - EPS
    ]
    if kills:
        return min(kills)
    ending = claim.ending
    stopped = (Reason.CANCELLED, Reason.TIMEOUT, Reason.RELEASED, *LOST)
    if run.pid != run.worker and ending is not None and ending.reason in stopped:
        return ending.at
    return None
