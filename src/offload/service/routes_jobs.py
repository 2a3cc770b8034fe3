"""``/v1/jobs``: submit, read, list, cancel, retry, history and live events of jobs.

Handlers translate HTTP into calls on :class:`offload.App` and nothing more. A job of another
tenant is answered exactly like a job that does not exist (404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from offload.api.auth import Principal
from offload.api.errors import ApiError
from offload.api.schemas import ErrorOut, History, JobOut, JobPage, SubmitRequest, TransitionOut
from offload.client import SubmitOptions
from offload.core import validate
from offload.core.job import JobFilter, JobRecord
from offload.core.states import State
from offload.errors import ConfigurationError, JobNotFound
from offload.service.deps import Admin, Reader, Service, ServiceState, Submitter
from offload.service.events import HEADERS, MEDIA_TYPE, follow_job
from offload.service.middleware import request_id_of

router = APIRouter(prefix="/v1", tags=["jobs"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or unknown token"},
    403: {"model": ErrorOut, "description": "the token's role is too weak"},
    429: {"model": ErrorOut, "description": "rate limited; see Retry-After"},
    503: {"model": ErrorOut, "description": "backend unavailable; see Retry-After"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such job"}
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "the job's state does not allow it"}
}
_SUBMIT: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "malformed JSON"},
    409: {"model": ErrorOut, "description": "idempotency key reused with another request"},
    413: {"model": ErrorOut, "description": "request body too large"},
    415: {"model": ErrorOut, "description": "request body is not JSON"},
    422: {"model": ErrorOut, "description": "unknown task or invalid arguments"},
}


async def own_job(svc: ServiceState, caller: Principal, job_id: str) -> JobRecord:
    """The job, if it belongs to the caller's tenant (else JobNotFound, as for no job)."""
    record = await svc.app.aget_record(job_id)
    if record.tenant != caller.tenant:
        raise JobNotFound(job_id)
    return record


#: a 202 that needs a second look carries this header (today: a queue no task declares)
WARNING_HEADER = "Offload-Warning"


def undeclared_queue(svc: ServiceState, queue: str) -> str | None:
    """Why a job in ``queue`` may never run, if no task declares it (workers serve declared
    queues unless started with ``--queues``); any submitter may use such a queue."""
    declared = sorted({spec.queue for spec in svc.app.registry})
    if queue in declared:
        return None
    return (
        f"no task declares queue {queue!r}: only a worker started with --queues {queue} will "
        f"run this job (declared: {', '.join(declared)})"
    )


@router.post("/jobs", status_code=202, responses={**_AUTH, **_SUBMIT})
async def submit_job(
    body: SubmitRequest,
    request: Request,
    response: Response,
    svc: Service,
    caller: Submitter,
    idempotency_key: Annotated[
        str | None, Header(min_length=1, max_length=validate.IDEMPOTENCY_KEY_MAX)
    ] = None,
) -> JobOut:
    """Submit a job. Answers once the job is durably stored; ``Location`` names it.

    With ``Idempotency-Key``, the same key (per tenant, for 24 hours) returns the same job;
    reusing it with a different request answers 409.
    """
    if body.queue is not None and (warning := undeclared_queue(svc, body.queue)):
        response.headers[WARNING_HEADER] = warning
    options = SubmitOptions(
        queue=body.queue,
        priority=body.priority,
        delay=body.delay,
        run_at=body.run_at_epoch(),
        idempotency_key=idempotency_key,
        concurrency_key=body.concurrency_key,
        tenant=caller.tenant,
        meta={"request_id": request_id_of(request.scope)},
    )
    new = svc.app.prepare(body.task, body.args, body.kwargs, options)
    [job] = await svc.app.asubmit_many([new])
    if job.id == new.id:  # not a replay of an idempotency key
        svc.metrics.jobs_submitted.labels(job.record.task).inc()
    response.headers["Location"] = svc.job_location(request, job.id)
    return JobOut.of(job.record)


@router.get("/jobs", responses={**_AUTH, 400: {"model": ErrorOut}})
async def list_jobs(
    svc: Service,
    caller: Reader,
    status: State | None = None,
    task: Annotated[str | None, Query(max_length=200)] = None,
    queue: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> JobPage:
    """The tenant's jobs, newest first, one page at a time."""
    flt = JobFilter(
        status=status, task=task, queue=queue, tenant=caller.tenant, limit=limit, cursor=cursor
    )
    try:
        page = await (await svc.app.backend()).list_jobs(flt)
    except ConfigurationError as exc:
        raise ApiError(400, "invalid_cursor", str(exc), {"cursor": cursor}) from None
    return JobPage(jobs=[JobOut.of(r) for r in page.jobs], next_cursor=page.next_cursor)


@router.get("/jobs/{job_id}", responses={**_AUTH, **_NOT_FOUND})
async def get_job(job_id: str, svc: Service, caller: Reader) -> JobOut:
    """One job: status, progress, result or error, timestamps."""
    return JobOut.of(await own_job(svc, caller, job_id))


@router.post("/jobs/{job_id}/cancel", responses={**_AUTH, **_NOT_FOUND, **_CONFLICT})
async def cancel_job(job_id: str, svc: Service, caller: Admin) -> JobOut:
    """Cancel a job: a waiting job is cancelled at once; a running job is asked to stop
    (``cancel_requested``) and becomes cancelled when its worker has stopped it."""
    await own_job(svc, caller, job_id)
    return JobOut.of((await svc.app.acancel(job_id)).record)


@router.post(
    "/jobs/{job_id}/retry", status_code=202, responses={**_AUTH, **_NOT_FOUND, **_CONFLICT}
)
async def retry_job(
    job_id: str, request: Request, response: Response, svc: Service, caller: Admin
) -> JobOut:
    """Run a failed or cancelled job again, as a new job (its ``retry_of`` names the old)."""
    await own_job(svc, caller, job_id)
    job = await svc.app.aretry(job_id, meta={"request_id": request_id_of(request.scope)})
    svc.metrics.jobs_submitted.labels(job.record.task).inc()
    response.headers["Location"] = svc.job_location(request, job.id)
    return JobOut.of(job.record)


@router.get("/jobs/{job_id}/history", responses={**_AUTH, **_NOT_FOUND})
async def job_history(job_id: str, svc: Service, caller: Reader) -> History:
    """The job's recorded transitions, oldest first."""
    await own_job(svc, caller, job_id)
    transitions = await (await svc.app.backend()).history(job_id)
    return History(job_id=job_id, transitions=[TransitionOut.of(t) for t in transitions])


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "events until the job ends"},
        **_AUTH,
        **_NOT_FOUND,
    },
)
async def job_events(job_id: str, svc: Service, caller: Reader) -> StreamingResponse:
    """Server-Sent Events: ``snapshot`` on connect, then ``progress`` and ``status`` events
    as the job changes, until it ends (see :mod:`offload.service.events`)."""
    first = await own_job(svc, caller, job_id)
    stream = follow_job(
        first,
        lambda: own_job(svc, caller, job_id),
        poll=svc.config.events_poll,
        heartbeat=svc.config.events_heartbeat,
    )
    return StreamingResponse(stream, media_type=MEDIA_TYPE, headers=HEADERS)
