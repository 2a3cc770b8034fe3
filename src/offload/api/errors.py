"""Every error answer has one shape: ``{"error": {"code", "message", "details"}}``.

``ApiError`` is raised by handlers and dependencies; offload's own exceptions are translated
here, in one table, so that routes stay free of try/except ladders. The table is read both
ways: :func:`translate` (an exception to its answer) serves ``offload.service`` and
``offload.integrations.flask``, :func:`exception_for` (an answer back to the exception) serves
``offload.http_client``. No web framework is imported here.

=====================  ======  ==========================
exception              status  code
=====================  ======  ==========================
malformed JSON body    400     malformed_json
TaskNotFound           422     unknown_task
InvalidArguments       422     invalid_arguments
body schema mismatch   422     invalid_request
JobNotFound            404     job_not_found
IdempotencyConflict    409     idempotency_conflict
InvalidTransition      409     invalid_transition
BackendError           503     backend_unavailable (with Retry-After)
anything else          500     internal_error (logged, never shown)
=====================  ======  ==========================

Raised before a handler runs, in ``offload.service``: 401 ``unauthorized`` and 403
``forbidden`` (``deps``), 429 ``rate_limited`` (``deps``; per tenant, or per client address
without a valid token), 413 ``payload_too_large``, 415 ``unsupported_media_type`` and 421
``misdirected_request`` (``middleware``); the router's own 404 and 405 use the same shape. Body
validation (:mod:`offload.api.schemas`, through ``core.validate``) answers 422
``invalid_request``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from offload.errors import (
    BackendError,
    IdempotencyConflict,
    InvalidArguments,
    InvalidTransition,
    JobNotFound,
    OffloadError,
    TaskNotFound,
)

log = logging.getLogger("offload.service")  # the service's logger, where these were first logged


class ApiError(Exception):
    """An error answer: HTTP status, a stable machine code and a message a person can act on."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> bytes:
    error = {"code": code, "message": message, "details": dict(details or {})}
    return orjson.dumps({"error": error}, default=str)


def translate(exc: Exception, *, retry_after: int) -> ApiError:
    """The ApiError for one of offload's exceptions (see the table in the module docstring)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, TaskNotFound):
        return ApiError(422, "unknown_task", str(exc), {"task": exc.name, "known_tasks": exc.known})
    if isinstance(exc, InvalidArguments):
        details = {"task": exc.task, "argument": exc.argument}
        return ApiError(422, "invalid_arguments", str(exc), details)
    if isinstance(exc, JobNotFound):
        return ApiError(404, "job_not_found", str(exc), {"job_id": exc.job_id})
    if isinstance(exc, IdempotencyConflict):
        details = {"idempotency_key": exc.key, "job_id": exc.job_id}
        return ApiError(409, "idempotency_conflict", str(exc), details)
    if isinstance(exc, InvalidTransition):
        details = {"job_id": exc.job_id, "status": exc.current}
        return ApiError(409, "invalid_transition", str(exc), details)
    if isinstance(exc, BackendError):
        log.warning("backend unavailable: %s", exc)
        return ApiError(
            503,
            "backend_unavailable",
            "the job store is unavailable right now; retry later",
            headers={"Retry-After": str(retry_after)},
        )
    log.error("unhandled error in request", exc_info=exc)
    return ApiError(500, "internal_error", "internal server error; see the service's log")


#: offload's exceptions that :func:`translate` gives a status of their own (not 500)
TRANSLATED: tuple[type[Exception], ...] = (
    TaskNotFound,
    InvalidArguments,
    JobNotFound,
    IdempotencyConflict,
    InvalidTransition,
    BackendError,
)


def exception_for(
    status: int, code: str, message: str, details: Mapping[str, Any]
) -> OffloadError | None:
    """The offload exception an error answer stands for, or None if the Python API has no class
    for it (the other way round from :func:`translate`; 503 is left to the caller, who knows
    which service did not answer)."""
    if status == 404 and code == "job_not_found":
        return JobNotFound(str(details.get("job_id", "")))
    if status == 422 and code == "unknown_task":
        return TaskNotFound(str(details.get("task", "")), list(details.get("known_tasks", [])))
    if status == 422 and code == "invalid_arguments":
        task = str(details.get("task", ""))
        reason = message.removeprefix(f"invalid arguments for task {task!r}: ")
        return InvalidArguments(task, reason, argument=details.get("argument"))
    if status == 409 and code == "idempotency_conflict":
        return IdempotencyConflict(str(details.get("idempotency_key")), str(details.get("job_id")))
    if status == 409 and code == "invalid_transition":
        target = message.partition("cannot become ")[2] or "that"
        return InvalidTransition(str(details.get("job_id")), str(details.get("status")), target)
    return None
