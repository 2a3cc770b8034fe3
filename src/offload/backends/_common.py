"""Small pieces every backend shares: transition checks, URL parsing, cursors."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from offload.core.bounds import check_finite, check_priority, check_seconds, check_time
from offload.core.job import JobRecord, NewJob
from offload.core.limits import Limits, check_cap
from offload.core.states import State, can_transition
from offload.core.validate import check_json
from offload.errors import ConfigurationError, InvalidTransition


def check_transition(job_id: str, current: State | None, target: State) -> None:
    """Raise InvalidTransition unless the one transition table allows the move."""
    if not can_transition(current, target):
        raise InvalidTransition(job_id, current.value if current else "new", target.value)


def check_new_job(job: NewJob) -> None:
    """Refuse a job whose numbers cannot be stored exactly (non-finite, priority out of
    range, NaN in meta) with a ValueError naming the field; every backend calls this before
    any write."""
    what = f"job {job.id}:"
    check_priority(job.priority, f"{what} priority")
    check_finite(job.delay, f"{what} delay")
    if job.run_at is not None:
        check_time(job.run_at, f"{what} run_at")
    if job.result_ttl is not None:
        check_seconds(job.result_ttl, f"{what} result_ttl")
    if job.limits is not None:
        check_limits(job.limits, what)
    check_json(job.meta, f"{what} meta")  # arguments are checked when they are encoded


def check_limits(limits: Limits, what: str) -> None:
    check_cap(limits.concurrency, f"{what} concurrency")
    check_cap(limits.key_concurrency, f"{what} key_concurrency")
    for name, rate in (("rate_limit", limits.rate), ("key_rate_limit", limits.key_rate)):
        if rate is not None:
            check_seconds(rate, f"{what} {name} interval", positive=True)


def check_retry_in(retry_in: float | None) -> None:
    """Refuse a retry delay that is not a finite number >= 0 seconds (ValueError)."""
    if retry_in is not None:
        check_seconds(retry_in, "retry_in")


def encode_cursor(created_at: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        at, job_id = raw.split("|", 1)
        if not math.isfinite(float(at)):  # nan or inf: no page starts there
            raise ValueError(at)
        return float(at), job_id
    except (ValueError, UnicodeDecodeError):
        raise ConfigurationError(
            f"invalid cursor {cursor!r}: pass the next_cursor of a previous page"
        ) from None


@dataclass(frozen=True, slots=True)
class ParsedURL:
    scheme: str
    netloc: str
    path: str
    options: dict[str, str]


def parse_url(url: str) -> ParsedURL:
    parts = urlsplit(url)
    if not parts.scheme:
        raise ConfigurationError(
            f"backend URL {url!r} has no scheme; use sqlite:///path.db, redis://host:6379/0 "
            "or memory://"
        )
    return ParsedURL(parts.scheme, parts.netloc, parts.path, dict(parse_qsl(parts.query)))


def ready_age(now: float, due: float | None) -> float | None:
    """Seconds a ready job due at ``due`` has waited by ``now`` (None: no ready job)."""
    return None if due is None else max(0.0, now - due)


def submitted_record(new: NewJob, status: State, run_at: float, now: float) -> JobRecord:
    """The record of ``new`` as a submit stores it (no attempt yet)."""
    return JobRecord(
        id=new.id,
        task=new.task,
        queue=new.queue,
        status=status,
        args=list(new.args),
        kwargs=dict(new.kwargs),
        priority=new.priority,
        attempts=0,
        losses=0,
        run_at=run_at,
        created_at=now,
        updated_at=now,
        idempotency_key=new.idempotency_key,
        concurrency_key=new.concurrency_key,
        tenant=new.tenant,
        meta=dict(new.meta),
    )
