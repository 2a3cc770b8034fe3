"""Wire models of the dashboard's read models (``/v1/overview/...``).

Counts cover the whole installation, as ``/v1/queues`` does; a job id, a concurrency key or
any other job data is shown only for the caller's own tenant.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from offload.core.states import State


def at(ts: float) -> datetime:
    """Epoch seconds as an aware UTC datetime (clamped to datetime's range)."""
    return datetime.fromtimestamp(min(max(ts, 0.0), 253402300799.0), UTC)


class JobRef(BaseModel):
    """A job of the caller's tenant, as a row shows it."""

    id: str
    task: str
    queue: str
    status: State
    progress: float | None = None
    started_at: datetime | None = None


# -- schedules ---------------------------------------------------------------------------------
class ScheduleRow(BaseModel):
    name: str
    task: str
    queue: str
    schedule: str = Field(description="the cron expression or period, as declared")
    missed_policy: str = Field(description="what a restarted scheduler does with missed ticks")
    next_tick: datetime
    last_tick: datetime | None = Field(description="the newest tick a job exists for")
    last_status: State | None = Field(description="the state of that tick's job")
    last_job: str | None = Field(description="that job's id (the caller's tenant only)")
    missed_ticks: int = Field(
        description="ticks of the last hour (up to a grace period ago) with no job"
    )


class SchedulesView(BaseModel):
    now: datetime
    schedules: list[ScheduleRow]


# -- limits ------------------------------------------------------------------------------------
class KeyUse(BaseModel):
    key: str
    running: int
    waiting: int


class LimitRow(BaseModel):
    task: str
    queue: str
    concurrency: int | None
    key_concurrency: int | None
    rate_per_minute: float | None = Field(description="starts per minute the task may make")
    key_rate_per_minute: float | None
    running: int = Field(description="running jobs of the task, all tenants")
    waiting: int = Field(description="queued jobs of the task, all tenants")
    started_last_minute: int = Field(description="jobs of the task started in the last 60 s")
    keys: list[KeyUse] = Field(
        description="use per concurrency key: keys of the caller's tenant's jobs, counted "
        "over all jobs (the cap is global)"
    )


class LimitsView(BaseModel):
    now: datetime
    limits: list[LimitRow]
    truncated: bool = Field(description="more jobs than were scanned: counts are lower bounds")


# -- workflows ---------------------------------------------------------------------------------
class FlowNode(BaseModel):
    """A chain, a group or a step of a workflow, with its state derived from its steps."""

    kind: Literal["chain", "group", "step"]
    path: str
    status: State | None = Field(description="None: not started")
    task: str | None = None
    job_id: str | None = None
    children: list[FlowNode] = Field(default_factory=list)


class WorkflowRow(BaseModel):
    id: str
    status: str
    created_at: datetime
    steps: int
    done: int
    root: FlowNode


class WorkflowsView(BaseModel):
    now: datetime
    workflows: list[WorkflowRow]


# -- workers -----------------------------------------------------------------------------------
class WorkerRow(BaseModel):
    id: str
    name: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    last_seen: datetime
    heartbeat_age: float = Field(description="seconds since its last heartbeat")
    processed: int
    running: int = Field(description="its running jobs in the backend now, all tenants")
    jobs: list[JobRef] = Field(description="its running jobs of the caller's tenant")


class WorkersView(BaseModel):
    now: datetime
    workers: list[WorkerRow]
    orphaned: int = Field(description="running jobs whose worker has no live heartbeat")


# -- queues over time --------------------------------------------------------------------------
class Bucket(BaseModel):
    start: datetime
    succeeded: int
    failed: int
    wait_avg: float | None = Field(description="mean seconds from due to started")
    wait_max: float | None


class QueueSeries(BaseModel):
    name: str
    ready: int
    running: int
    oldest_ready_age: float | None = Field(
        description="seconds since the oldest ready job (queued, or scheduled and due) was due"
    )
    buckets: list[Bucket]


class QueuesView(BaseModel):
    now: datetime
    window: int
    bucket: int
    queues: list[QueueSeries]
    truncated: bool
