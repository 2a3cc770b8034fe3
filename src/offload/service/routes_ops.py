"""Operational routes: tasks, queues, workers (``/v1``), health probes and metrics.

``/v1/tasks``, ``/v1/queues`` and ``/v1/workers`` need a token of any role; they describe the
shared installation (queue counts cover all tenants) and never show a job. The probes and
``/metrics`` need no token, so that load balancers and Prometheus can reach them; they show
no job data either.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Response

from offload.api.errors import ApiError
from offload.api.schemas import (
    ErrorOut,
    Health,
    QueueList,
    QueueOut,
    ScheduleList,
    ScheduleOut,
    TaskList,
    TaskOut,
    WorkerList,
    WorkerOut,
)
from offload.backends import Backend, storage
from offload.core.job import JobFilter
from offload.core.schedule import describe_schedules
from offload.core.states import State
from offload.service.deps import Reader, Service, ServiceState
from offload.service.metrics import CONTENT_TYPE

log = logging.getLogger("offload.service")

router = APIRouter(prefix="/v1", tags=["registry"])
probes = APIRouter(tags=["operations"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    429: {"model": ErrorOut},
    503: {"model": ErrorOut},
}


@router.get("/tasks", responses=_AUTH)
async def list_tasks(svc: Service, caller: Reader) -> TaskList:
    """Registered tasks, with the JSON schema of their arguments."""
    specs = sorted(svc.app.registry, key=lambda spec: spec.name)
    return TaskList(tasks=[TaskOut.of(spec) for spec in specs])


@router.get("/queues", responses=_AUTH)
async def list_queues(svc: Service, caller: Reader) -> QueueList:
    """Every queue that holds jobs, with counts by state (all tenants together)."""
    stats = await (await svc.app.backend()).stats()
    return QueueList(queues=[QueueOut.of(q) for q in stats])


@router.get("/schedules", responses=_AUTH)
async def list_schedules(svc: Service, caller: Reader) -> ScheduleList:
    """Periodic tasks and their next ticks (by the backend's clock), by name."""
    now = await (await svc.app.backend()).now()
    return ScheduleList(schedules=[ScheduleOut(**s) for s in describe_schedules(svc.app, now)])


@router.get("/workers", responses=_AUTH)
async def list_workers(svc: Service, caller: Reader) -> WorkerList:
    """Live workers, oldest first, as of their last heartbeat, except ``running``: their
    running jobs in the backend now, as ``/v1/queues`` counts them (a heartbeat may be a
    lease renewal old, 10 s by default)."""
    backend = await svc.app.backend()
    workers = await backend.workers()
    running = await _running_by_worker(backend) if workers else {}
    return WorkerList(
        workers=[WorkerOut.of(replace(w, running=running.get(w.id, 0))) for w in workers]
    )


async def _running_by_worker(backend: Backend) -> Counter[str | None]:
    """How many running jobs each worker holds (all tenants), by worker id."""
    counts: Counter[str | None] = Counter()
    cursor: str | None = None
    while True:
        page = await backend.list_jobs(JobFilter(status=State.RUNNING, limit=500, cursor=cursor))
        counts.update(job.worker_id for job in page.jobs)
        cursor = page.next_cursor
        if cursor is None:
            return counts


@probes.get("/health/live", response_model_exclude_none=True)
async def live() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@probes.get("/health/ready", responses={503: {"model": ErrorOut}}, response_model_exclude_none=True)
async def ready(svc: Service) -> Health:
    """Readiness: the backend answers a ping, and whatever else the service depends on runs
    (``offload up``: its embedded worker); 503 with Retry-After when not."""
    try:
        await (await svc.app.backend()).ping()
    except Exception as exc:
        log.warning("readiness check failed: %s", exc)
        raise _not_ready(svc, f"the backend does not answer ({type(exc).__name__})") from None
    reason = svc.not_ready() if svc.not_ready is not None else None
    if reason is not None:
        raise _not_ready(svc, reason)
    try:
        found = await storage.measure(await svc.app.backend())
    except Exception as exc:  # figures, not readiness
        log.warning("cannot measure finished jobs for /health/ready: %s", exc)
        return Health(status="ok")
    details = found.details()
    if problem := storage.warning(found, svc.app.retention()):
        details["warning"] = problem
    return Health(status="ok", details=details)


def _not_ready(svc: ServiceState, reason: str) -> ApiError:
    return ApiError(
        503,
        "not_ready",
        f"{reason}; retry later",
        headers={"Retry-After": str(svc.config.unavailable_retry_after)},
    )


@probes.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
)
async def metrics(svc: Service) -> Response:
    """Prometheus metrics; queue gauges are read from the backend now."""
    try:
        svc.metrics.set_queue_stats(await (await svc.app.backend()).stats())
        svc.metrics.set_storage(await storage.measure(await svc.app.backend()))
    except Exception as exc:  # still serve the process's own metrics
        log.warning("cannot read queue stats for /metrics: %s", exc)
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)
