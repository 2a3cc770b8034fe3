"""Every error answer has one shape: ``{"error": {"code", "message", "details"}}``.

``ApiError`` is raised by handlers and dependencies; offload's own exceptions are translated
here, in one table, so that routes stay free of try/except ladders:

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

Raised before a handler runs: 401 ``unauthorized`` and 403 ``forbidden`` (``deps``), 429
``rate_limited`` (``deps``; per tenant, or per client address without a valid token), 413
``payload_too_large``, 415 ``unsupported_media_type`` and 421 ``misdirected_request``
(``middleware``); the router's own 404 and 405 use the same shape. Body validation (``schemas``,
through ``core.validate``) answers 422 ``invalid_request``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from offload.errors import (
    BackendError,
    IdempotencyConflict,
    InvalidArguments,
    InvalidTransition,
    JobNotFound,
    TaskNotFound,
)

log = logging.getLogger("offload.service")


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

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, self.details, self.headers)


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> bytes:
    error = {"code": code, "message": message, "details": dict(details or {})}
    return orjson.dumps({"error": error}, default=str)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(code, message, details),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


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
    TaskNotFound, InvalidArguments, JobNotFound, IdempotencyConflict, InvalidTransition,
    BackendError,
)  # fmt: skip


def install_error_handlers(app: FastAPI, *, retry_after: int) -> None:
    """Register handlers so that every error, expected or not, answers in the one shape."""

    async def on_offload_error(request: Request, exc: Exception) -> Response:
        return translate(exc, retry_after=retry_after).response()

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        phrase = HTTPStatus(exc.status_code).phrase
        code = phrase.lower().replace(" ", "_").replace("-", "_")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return error_response(
                400, "malformed_json", "the request body is not valid JSON", {"errors": errors}
            )
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        message = f"invalid request: {where}: {first['msg']}" if where else str(first["msg"])
        return error_response(422, "invalid_request", message, {"errors": errors})

    handled: tuple[type[Exception], ...] = (ApiError, *TRANSLATED, Exception)
    for exc_class in handled:
        app.add_exception_handler(exc_class, on_offload_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
