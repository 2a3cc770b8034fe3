"""Read models of the dashboard: schedules, limits, workers and queues over time.

Built only from what every backend exposes (``list_jobs``, ``stats``, ``workers``, ``now``), so
they work unchanged on every backend. Listing jobs is bounded: at most :data:`SCAN` jobs are
read per question, newest first; a view says ``truncated`` when there were more.
(Workflows: see :mod:`offload.service.overview_flows`.)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from offload.backends import Backend
from offload.client import App
from offload.core.job import JobFilter, JobRecord, WorkerInfo
from offload.core.schedule import Schedule, tick_of
from offload.core.states import State
from offload.core.task import TaskSpec
from offload.service.overview_models import (
    Bucket,
    JobRef,
    KeyUse,
    LimitRow,
    LimitsView,
    QueueSeries,
    QueuesView,
    ScheduleRow,
    SchedulesView,
    WorkerRow,
    WorkersView,
    at,
)

#: the most jobs read to answer one question
SCAN = 5000
#: a tick is missed when it has no job this many seconds after it
GRACE = 30.0
#: the period over which missed ticks are counted
MISSED_WINDOW = 3600.0
PAGE = 1000
#: the most buckets a queue's series has (a smaller bucket than window / this is widened)
MAX_BUCKETS = 720


@dataclass
class Scan:
    """Jobs matching a filter, newest first, read a page at a time up to ``cap``."""

    backend: Backend
    flt: JobFilter
    cap: int = SCAN
    truncated: bool = False

    async def __aiter__(self) -> AsyncIterator[JobRecord]:
        seen, cursor = 0, None
        while True:
            limit = min(PAGE, self.cap - seen)
            page = await self.backend.list_jobs(
                JobFilter(
                    status=self.flt.status,
                    task=self.flt.task,
                    queue=self.flt.queue,
                    tenant=self.flt.tenant,
                    limit=limit,
                    cursor=cursor,
                )
            )
            for job in page.jobs:
                yield job
            seen += len(page.jobs)
            cursor = page.next_cursor
            if cursor is None:
                return
            if seen >= self.cap:
                self.truncated = True
                return


def ref(job: JobRecord) -> JobRef:
    return JobRef(
        id=job.id,
        task=job.task,
        queue=job.queue,
        status=job.status,
        progress=job.progress,
        started_at=None if job.started_at is None else at(job.started_at),
    )


# -- schedules ---------------------------------------------------------------------------------
async def schedules_view(app: App, backend: Backend, tenant: str) -> SchedulesView:
    now = await backend.now()
    rows = [
        await _schedule_row(app.schedules[name], backend, now, tenant)
        for name in sorted(app.schedules)
    ]
    return SchedulesView(now=at(now), schedules=rows)


def expected_ticks(schedule: Schedule, now: float) -> list[int]:
    """The ticks of the last :data:`MISSED_WINDOW` up to :data:`GRACE` ago, newest first."""
    ticks: list[int] = []
    tick = schedule.latest_tick(now - GRACE)
    while tick is not None and tick > now - MISSED_WINDOW and len(ticks) < SCAN:
        ticks.append(tick)
        tick = schedule.latest_tick(tick - 1)
    return ticks


async def _schedule_row(
    schedule: Schedule, backend: Backend, now: float, tenant: str
) -> ScheduleRow:
    fired: dict[int, JobRecord] = {}
    async for job in Scan(backend, JobFilter(task=schedule.task), cap=PAGE):
        tick = tick_of(job.meta, schedule.name)
        if tick is not None:
            fired.setdefault(tick, job)
    last = fired[max(fired)] if fired else None
    first_fired = min(fired) if fired else None
    missed = [
        t
        for t in expected_ticks(schedule, now)
        if t not in fired and (first_fired is None or t > first_fired)
    ]
    described = schedule.describe(now)
    return ScheduleRow(
        name=schedule.name,
        task=schedule.task,
        queue=schedule.queue,
        schedule=described["schedule"],
        missed_policy=schedule.missed,
        next_tick=at(schedule.next_tick(now)),
        last_tick=None if not fired else at(max(fired)),
        last_status=None if last is None else last.status,
        last_job=last.id if last is not None and last.tenant == tenant else None,
        missed_ticks=len(missed) if fired else 0,
    )


# -- limits ------------------------------------------------------------------------------------
async def limits_view(app: App, backend: Backend, tenant: str) -> LimitsView:
    now = await backend.now()
    specs = [spec for spec in app.registry if spec.limits is not None and spec.limits.any]
    rows: list[LimitRow] = []
    truncated = False
    for spec in sorted(specs, key=lambda s: s.name):
        row, cut = await _limit_row(spec, backend, now, tenant)
        rows.append(row)
        truncated = truncated or cut
    return LimitsView(now=at(now), limits=rows, truncated=truncated)


def _per_minute(interval: float | None) -> float | None:
    return None if interval is None else round(60.0 / interval, 3)


async def _limit_row(
    spec: TaskSpec, backend: Backend, now: float, tenant: str
) -> tuple[LimitRow, bool]:
    assert spec.limits is not None
    running, waiting = (
        Scan(backend, JobFilter(task=spec.name, status=State.RUNNING)),
        Scan(backend, JobFilter(task=spec.name, status=State.QUEUED)),
    )
    use: dict[str, Counter[str]] = defaultdict(Counter)
    mine: set[str] = set()
    counts: Counter[str] = Counter()
    for name, scan in (("running", running), ("waiting", waiting)):
        async for job in scan:
            counts[name] += 1
            if job.concurrency_key is not None:
                use[job.concurrency_key][name] += 1
                if job.tenant == tenant:
                    mine.add(job.concurrency_key)
    started_recently = 0
    async for job in Scan(backend, JobFilter(task=spec.name), cap=PAGE):
        if job.started_at is not None and job.started_at > now - 60:
            started_recently += 1
    keys = [
        KeyUse(key=k, running=use[k]["running"], waiting=use[k]["waiting"]) for k in sorted(mine)
    ]
    limits = spec.limits
    row = LimitRow(
        task=spec.name,
        queue=spec.queue,
        concurrency=limits.concurrency,
        key_concurrency=limits.key_concurrency,
        rate_per_minute=_per_minute(limits.rate),
        key_rate_per_minute=_per_minute(limits.key_rate),
        running=counts["running"],
        waiting=counts["waiting"],
        started_last_minute=started_recently,
        keys=keys,
    )
    return row, running.truncated or waiting.truncated


# -- workers -----------------------------------------------------------------------------------
async def workers_view(backend: Backend, tenant: str) -> WorkersView:
    now = await backend.now()
    workers = await backend.workers()
    running: dict[str | None, list[JobRecord]] = defaultdict(list)
    async for job in Scan(backend, JobFilter(status=State.RUNNING)):
        running[job.worker_id].append(job)
    live = {w.id for w in workers}
    orphaned = sum(len(jobs) for wid, jobs in running.items() if wid not in live)
    rows = [_worker_row(w, running.get(w.id, []), now, tenant) for w in workers]
    return WorkersView(now=at(now), workers=rows, orphaned=orphaned)


def _worker_row(w: WorkerInfo, jobs: list[JobRecord], now: float, tenant: str) -> WorkerRow:
    return WorkerRow(
        id=w.id,
        name=w.name,
        host=w.host,
        pid=w.pid,
        queues=w.queues,
        concurrency=w.concurrency,
        started_at=at(w.started_at),
        last_seen=at(w.last_seen),
        heartbeat_age=round(max(0.0, now - w.last_seen), 3),
        processed=w.processed,
        running=len(jobs),
        jobs=[ref(j) for j in jobs if j.tenant == tenant],
    )


# -- queues over time --------------------------------------------------------------------------
async def queues_view(backend: Backend, *, window: int = 3600, bucket: int = 60) -> QueuesView:
    """Per queue: jobs finished and their wait (due -> started) per ``bucket`` seconds over
    the last ``window`` seconds, by finish time; and the age of the oldest ready job."""
    bucket = max(bucket, -(-window // MAX_BUCKETS))
    now = await backend.now()
    stats = {s.queue: s for s in await backend.stats()}
    count = window // bucket
    start = now - count * bucket
    series: dict[str, list[list[float]]] = {q: [[] for _ in range(count)] for q in stats}
    failed: dict[str, Counter[int]] = defaultdict(Counter)
    scan = Scan(backend, JobFilter())
    async for job in scan:
        if job.created_at < start - window:
            break
        if job.finished_at is None or job.finished_at < start or job.status is State.CANCELLED:
            continue
        index = min(count - 1, int((job.finished_at - start) // bucket))
        waits = series.setdefault(job.queue, [[] for _ in range(count)])[index]
        waits.append(max(0.0, (job.started_at or job.finished_at) - job.run_at))
        if job.status is State.FAILED:
            failed[job.queue][index] += 1
    queues = [
        QueueSeries(
            name=name,
            ready=stats[name].count(State.QUEUED) if name in stats else 0,
            running=stats[name].count(State.RUNNING) if name in stats else 0,
            oldest_ready_age=_rounded(stats[name].oldest_ready_age) if name in stats else None,
            buckets=_buckets(lists, failed[name], start, bucket),
        )
        for name, lists in sorted(series.items())
    ]
    return QueuesView(
        now=at(now), window=count * bucket, bucket=bucket, queues=queues, truncated=scan.truncated
    )


def _buckets(
    lists: list[list[float]], failed: Counter[int], start: float, size: int
) -> list[Bucket]:
    return [
        Bucket(
            start=at(start + i * size),
            succeeded=len(waits) - failed[i],
            failed=failed[i],
            wait_avg=round(sum(waits) / len(waits), 3) if waits else None,
            wait_max=round(max(waits), 3) if waits else None,
        )
        for i, waits in enumerate(lists)
    ]


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
