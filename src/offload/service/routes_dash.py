"""``/v1/overview``: the read models behind the dashboard's pages, as JSON and as live streams.

Each view (``schedules``, ``limits``, ``workflows``, ``workers``, ``queues``) is one GET, and
``/v1/overview/{view}/events`` follows it over Server-Sent Events: a ``snapshot`` event on
connect, then an ``update`` event each time the view changed (read every ``interval``
seconds: 2 to 10 by default, see :data:`INTERVALS`), an ``error`` event while it cannot be
read (the stream goes on), and a keep-alive comment when nothing was sent for 15 s. Same
tokens as the rest of ``/v1``: any role reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from offload.api.auth import Principal
from offload.api.errors import error_body, translate
from offload.api.schemas import ErrorOut
from offload.errors import OffloadError
from offload.service.deps import Reader, Service, ServiceState
from offload.service.events import HEADERS, KEEP_ALIVE, MEDIA_TYPE, sse
from offload.service.overview import limits_view, queues_view, schedules_view, workers_view
from offload.service.overview_flows import workflows_view
from offload.service.overview_models import (
    LimitsView,
    QueuesView,
    SchedulesView,
    WorkersView,
    WorkflowsView,
)

router = APIRouter(prefix="/v1/overview", tags=["overview"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    429: {"model": ErrorOut},
    503: {"model": ErrorOut},
}
View = Literal["schedules", "limits", "workflows", "workers", "queues"]
HEARTBEAT = 15.0
#: seconds between reads of a followed view, unless the client asks otherwise: the queue
#: charts have one-minute buckets and cost the most to read (up to 5,000 jobs)
INTERVALS: dict[str, float] = {
    "schedules": 5.0,
    "limits": 3.0,
    "workflows": 3.0,
    "workers": 2.0,
    "queues": 10.0,
}
Window = Annotated[int, Query(ge=60, le=86400, description="seconds of history")]
Size = Annotated[
    int, Query(ge=5, le=3600, description="seconds per bucket (widened to make at most 720)")
]


@router.get("/schedules", responses=_AUTH)
async def schedules(svc: Service, caller: Reader) -> SchedulesView:
    """Periodic tasks: next tick, last tick that has a job and its state, missed ticks of the
    last hour."""
    return await schedules_view(svc.app, await svc.app.backend(), caller.tenant)


@router.get("/limits", responses=_AUTH)
async def limits(svc: Service, caller: Reader) -> LimitsView:
    """Tasks with caps or rate limits: their limits, current use and waiting jobs (per key)."""
    return await limits_view(svc.app, await svc.app.backend(), caller.tenant)


@router.get("/workflows", responses=_AUTH)
async def workflows(
    svc: Service, caller: Reader, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> WorkflowsView:
    """The newest workflows of the caller's tenant, each as a tree of its steps' states."""
    return await workflows_view(await svc.app.backend(), caller.tenant, limit=limit)


@router.get("/workers", responses=_AUTH)
async def workers(svc: Service, caller: Reader) -> WorkersView:
    """Live workers with their heartbeat age and their running jobs."""
    return await workers_view(await svc.app.backend(), caller.tenant)


@router.get("/queues", responses=_AUTH)
async def queues(
    svc: Service, caller: Reader, window: Window = 3600, bucket: Size = 60
) -> QueuesView:
    """Per queue: jobs finished and their wait (due -> started) per bucket, and the age of
    the oldest ready job (all tenants)."""
    return await queues_view(await svc.app.backend(), window=window, bucket=bucket)


def _reader(
    view: View, svc: ServiceState, caller: Principal, window: int, bucket: int
) -> Callable[[], Awaitable[BaseModel]]:
    async def read() -> BaseModel:
        backend = await svc.app.backend()
        if view == "schedules":
            return await schedules_view(svc.app, backend, caller.tenant)
        if view == "limits":
            return await limits_view(svc.app, backend, caller.tenant)
        if view == "workflows":
            return await workflows_view(backend, caller.tenant)
        if view == "workers":
            return await workers_view(backend, caller.tenant)
        return await queues_view(backend, window=window, bucket=bucket)

    return read


@router.get(
    "/{view}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "the view, live"}, **_AUTH},
)
async def view_events(
    view: View,
    svc: Service,
    caller: Reader,
    interval: Annotated[
        float | None,
        Query(ge=0.2, le=60, description="seconds between reads (default: 2 to 10 by view)"),
    ] = None,
    window: Window = 3600,
    bucket: Size = 60,
) -> StreamingResponse:
    """The view as Server-Sent Events: ``snapshot``, then ``update`` when it changed
    (``window`` and ``bucket``: of the ``queues`` view)."""
    read = _reader(view, svc, caller, window, bucket)
    every = interval if interval is not None else INTERVALS[view]
    stream = follow_view(read, interval=every, heartbeat=HEARTBEAT)
    return StreamingResponse(stream, media_type=MEDIA_TYPE, headers=HEADERS)


def _data(model: BaseModel) -> bytes:
    """The view without its ``now`` (which alone changes every read)."""
    return model.model_dump_json(exclude={"now"}).encode()


async def follow_view(
    read: Callable[[], Awaitable[BaseModel]], *, interval: float, heartbeat: float
) -> AsyncIterator[bytes]:
    """Yield the view's events until the client goes away."""
    last: bytes | None = None
    first, last_sent = True, time.monotonic()
    while True:
        try:
            model = await read()
        except OffloadError as exc:
            err = translate(exc, retry_after=1)
            yield sse("error", error_body(err.code, err.message, err.details))
            last, first, last_sent = None, True, time.monotonic()
        else:
            data = _data(model)
            if data != last:
                last = data
                yield sse("snapshot" if first else "update", model.model_dump_json().encode())
                first, last_sent = False, time.monotonic()
        if time.monotonic() - last_sent >= heartbeat:
            yield KEEP_ALIVE
            last_sent = time.monotonic()
        await asyncio.sleep(interval)
