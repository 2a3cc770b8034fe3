"""Answers in the HTTP API's shape from an application's own endpoints: ``accepted`` (202 and
``Location``) and ``handle_errors`` (offload's exceptions as the service answers them).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.responses import Response

from offload.api.errors import TRANSLATED, translate
from offload.api.schemas import JobOut
from offload.jobs import Job
from offload.service.config import ServiceConfig
from offload.service.errors import api_response

#: Retry-After (seconds) of a 503 when the backend is unavailable, as ``offload serve`` answers
UNAVAILABLE_RETRY_AFTER = ServiceConfig().unavailable_retry_after


def handle_errors(api: Starlette, *, retry_after: int = UNAVAILABLE_RETRY_AFTER) -> None:
    """Answer offload's exceptions raised anywhere in ``api`` as the HTTP API does, in its
    shape ``{"error": {"code", "message", "details"}}``: ``JobNotFound`` 404,
    ``TaskNotFound`` and ``InvalidArguments`` 422, ``IdempotencyConflict`` and
    ``InvalidTransition`` 409, ``BackendError`` (``BackendUnavailable``) 503 with
    ``Retry-After: <retry_after>``.

    A handler the application already has for one of these classes is kept, and one it
    registers later replaces offload's. Other exceptions (``HTTPException``, validation
    errors, your own) keep the application's handling.
    """

    async def on_offload_error(request: Request, exc: Exception) -> Response:
        return api_response(translate(exc, retry_after=retry_after))

    for exc_class in TRANSLATED:
        if exc_class not in api.exception_handlers:
            api.add_exception_handler(exc_class, on_offload_error)


def _location(request: Request, prefix: str, job_id: str) -> str:
    """The URL path of job ``job_id`` under ``prefix`` (behind the app's ``root_path``)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return f"{root}{prefix.rstrip('/')}/{job_id}"


def accepted(job: Job, request: Request, *, prefix: str = "/jobs") -> JSONResponse:
    """202 Accepted with ``job`` as the service shows it and ``Location: {prefix}/{id}``.

    Pass the ``prefix`` given to :func:`mount` when it is not the default.
    """
    return JSONResponse(
        JobOut.of(job.record).model_dump(mode="json"),
        status_code=202,
        headers={"Location": _location(request, prefix, job.id)},
    )
