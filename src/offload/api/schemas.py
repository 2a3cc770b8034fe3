"""Wire models of the HTTP API (pydantic), separate from the core model.

Times cross the wire as ISO 8601 strings in UTC. A job's tenant, lease token, meta and
idempotency key are never sent back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from offload.core import bounds, validate
from offload.core.job import JobRecord, QueueStats, Transition, WorkerInfo
from offload.core.limits import Limits
from offload.core.states import Reason, State
from offload.core.task import ExecutorKind, TaskSpec

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]
MAX_EPOCH = validate.MAX_EPOCH
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_SECONDS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds()


def at(ts: float) -> datetime:
    """Epoch seconds as an aware UTC datetime; a stored time out of datetime's range is shown
    clamped to it, so that a job can always be read (never a 500 for a value on disk)."""
    if ts != ts:  # NaN
        return _EPOCH
    return _EPOCH + timedelta(seconds=min(max(ts, _MIN_SECONDS), MAX_EPOCH))


def maybe_at(ts: float | None) -> datetime | None:
    return None if ts is None else at(ts)


class SubmitRequest(BaseModel):
    """A job to submit: a registered task and its JSON arguments."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task: Name = Field(description="name of a registered task (see GET /v1/tasks)")
    args: list[Any] = Field(default_factory=list, description="positional arguments")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments")
    queue: str | None = Field(
        None, description=f"overrides the task's queue; {validate.QUEUE_NAME_RULE}"
    )
    priority: int | None = Field(
        None,
        ge=bounds.PRIORITY_MIN,
        le=bounds.PRIORITY_MAX,
        description="higher runs first; default: the task's",
    )
    delay: float | None = Field(
        None, ge=0, le=bounds.MAX_DELAY, description="seconds to wait (ten years at most)"
    )
    run_at: datetime | Annotated[float, Field(ge=0, le=MAX_EPOCH)] | None = Field(
        None,
        description="when to run: ISO 8601 (UTC if no offset) or epoch seconds (not "
        "milliseconds), up to 9999-12-31T23:59:59Z; not together with delay",
    )
    concurrency_key: str | None = Field(
        None,
        description=f"jobs sharing a key count against its concurrency cap; {validate.KEY_RULE}",
    )

    @field_validator("run_at", mode="before")
    @classmethod
    def _run_at(cls, value: object) -> float | None:
        return None if value is None else validate.run_at_epoch(value)

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        return None if value is None else validate.queue_name(value)

    @field_validator("concurrency_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else validate.concurrency_key(value)

    @field_validator("args", "kwargs")
    @classmethod
    def _json(cls, value: Any, info: ValidationInfo) -> Any:
        validate.check_json(value, str(info.field_name))
        return value

    @model_validator(mode="after")
    def _schedule(self) -> SubmitRequest:
        validate.check_schedule(self.delay, self.run_at)
        return self

    def run_at_epoch(self) -> float | None:
        assert not isinstance(self.run_at, datetime)  # the validator made it epoch seconds
        return self.run_at


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    task: str
    queue: str
    status: State
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    attempts: int
    progress: float | None
    progress_message: str | None
    result: Any
    error: dict[str, Any] | None
    cancel_requested: bool
    retry_of: str | None = Field(None, description="the job this one retries, if any")
    created_at: datetime
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, r: JobRecord) -> JobOut:
        retry_of = r.meta.get("retry_of")
        return cls(
            id=r.id,
            task=r.task,
            queue=r.queue,
            status=r.status,
            args=r.args,
            kwargs=r.kwargs,
            priority=r.priority,
            attempts=r.attempts,
            progress=r.progress,
            progress_message=r.progress_message,
            result=r.result,
            error=r.error,
            cancel_requested=r.cancel_requested,
            retry_of=retry_of if isinstance(retry_of, str) else None,
            created_at=at(r.created_at),
            run_at=at(r.run_at),
            started_at=maybe_at(r.started_at),
            finished_at=maybe_at(r.finished_at),
        )


class JobPage(BaseModel):
    """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    jobs: list[JobOut]
    next_cursor: str | None


class TransitionOut(BaseModel):
    """One recorded state change."""

    at: datetime
    from_status: State | None
    to_status: State
    reason: Reason
    attempt: int
    token: int = Field(description="fencing token of the claim the change happened under")
    worker_id: str | None
    detail: str | None

    @classmethod
    def of(cls, t: Transition) -> TransitionOut:
        return cls(
            at=at(t.at),
            from_status=t.from_status,
            to_status=t.to_status,
            reason=t.reason,
            attempt=t.attempt,
            token=t.token,
            worker_id=t.worker_id,
            detail=t.detail,
        )


class History(BaseModel):
    job_id: str
    transitions: list[TransitionOut]


class TaskOut(BaseModel):
    """A registered task and the JSON schema of its arguments."""

    name: str
    queue: str
    executor: ExecutorKind
    retries: int
    timeout: float | None
    priority: int
    arguments: dict[str, Any] = Field(description="JSON schema of the task's parameters")
    concurrency: int | None = Field(None, description="running jobs at most, all workers")
    key_concurrency: int | None = Field(None, description="running jobs per concurrency_key")
    rate_limit_interval: float | None = Field(
        None, description="seconds between starts (from rate_limit), all workers"
    )
    key_rate_limit_interval: float | None = Field(
        None, description="seconds between starts per concurrency_key"
    )

    @classmethod
    def of(cls, spec: TaskSpec) -> TaskOut:
        limits = spec.limits or Limits()
        return cls(
            name=spec.name,
            queue=spec.queue,
            executor=spec.executor,
            retries=spec.retry.retries,
            timeout=spec.timeout,
            priority=spec.priority,
            arguments=spec.arguments_schema(),
            concurrency=limits.concurrency,
            key_concurrency=limits.key_concurrency,
            rate_limit_interval=limits.rate,
            key_rate_limit_interval=limits.key_rate,
        )


class TaskList(BaseModel):
    tasks: list[TaskOut]


class ScheduleOut(BaseModel):
    """A periodic task's schedule and its next tick."""

    name: str
    task: str
    queue: str
    schedule: str = Field(description='readable, e.g. "*/5 * * * *" or "every 30s"')
    cron: str | None
    every: int | None = Field(description="seconds between ticks, for every= schedules")
    tz: str | None
    missed: str = Field(description='"skip" or "once": ticks missed while no worker ran')
    next_tick: datetime


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]


class QueueOut(BaseModel):
    """Job counts of one queue by state (every state present, zero included), and how long
    its oldest ready job has waited."""

    name: str
    counts: dict[State, int]
    total: int
    oldest_ready_age: float | None = Field(
        default=None,
        description="seconds since the oldest ready job (queued, or scheduled and due) was due; "
        "null when none is ready",
    )

    @classmethod
    def of(cls, q: QueueStats) -> QueueOut:
        counts = {state: q.count(state) for state in State}
        age = None if q.oldest_ready_age is None else round(q.oldest_ready_age, 3)
        return cls(name=q.queue, counts=counts, total=sum(counts.values()), oldest_ready_age=age)


class QueueList(BaseModel):
    queues: list[QueueOut]


class WorkerOut(BaseModel):
    """A live worker process, as of its last heartbeat."""

    id: str
    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    last_seen: datetime
    running: int
    processed: int

    @classmethod
    def of(cls, w: WorkerInfo) -> WorkerOut:
        return cls(
            id=w.id,
            name=w.name,
            host=w.host,
            pid=w.pid,
            queues=list(w.queues),
            concurrency=w.concurrency,
            started_at=at(w.started_at),
            last_seen=at(w.last_seen),
            running=w.running,
            processed=w.processed,
        )


class WorkerList(BaseModel):
    workers: list[WorkerOut]


class Health(BaseModel):
    status: str = Field(description='"ok" when healthy')
    details: dict[str, Any] | None = Field(
        default=None,
        description="readiness: finished jobs stored, their estimated bytes, Redis maxmemory, "
        "and a warning when finished jobs may fill the backend",
    )


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. unknown_task")
    message: str = Field(description="what went wrong and what to do, for a person")
    details: dict[str, Any]


class ErrorOut(BaseModel):
    """The shape of every error answer."""

    error: ErrorDetail
