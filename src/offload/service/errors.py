"""FastAPI's side of the error answers: the handlers that give every error, expected or not,
the one shape ``{"error": {"code", "message", "details"}}``. The error table itself (which
exception answers which status and code) is :mod:`offload.api.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from offload.api.errors import TRANSLATED, ApiError, error_body, translate


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


def api_response(error: ApiError) -> Response:
    """The answer of ``error``."""
    return error_response(error.status, error.code, error.message, error.details, error.headers)


def install_error_handlers(app: FastAPI, *, retry_after: int) -> None:
    """Register handlers so that every error, expected or not, answers in the one shape."""

    async def on_offload_error(request: Request, exc: Exception) -> Response:
        return api_response(translate(exc, retry_after=retry_after))

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
