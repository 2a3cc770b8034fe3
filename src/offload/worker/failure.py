"""How an exception is recorded on a job: plain JSON, never a pickled exception."""

from __future__ import annotations

import traceback
from typing import Any

MAX_TRACEBACK_CHARS = 8_000


def error_info(exc: BaseException, *, kind: str | None = None) -> dict[str, Any]:
    """``{"type", "message", "traceback"}`` for a job's ``error`` field."""
    text = "".join(traceback.format_exception(exc))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return {
        "type": kind or type(exc).__name__,
        "message": describe(exc),
        "traceback": text,
    }


def describe(exc: BaseException) -> str:
    """``str(exc)``, or when that fails (a broken ``__str__``) its ``repr``, or its type name:
    recording an error must never fail, or the job would be left running and re-run."""
    for render in (str, repr):
        try:
            text = render(exc)
        except Exception:
            continue
        if isinstance(text, str) and text:
            return text
    return type(exc).__name__


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters cut]"


def clip_error(info: dict[str, Any] | None, limit: int) -> dict[str, Any] | None:
    """The error with its message cut to ``limit`` characters (see Settings.max_error_chars)."""
    message = info.get("message") if info else None
    if info is None or not isinstance(message, str) or len(message) <= limit:
        return info
    return {**info, "message": clip(message, limit)}


def result_too_large(size: int, limit: int, task: str) -> dict[str, Any]:
    """The error of a job whose result is over Settings.max_result_bytes."""
    return {
        "type": "ResultTooLarge",
        "message": f"task {task} returned {size} bytes of JSON, more than max_result_bytes "
        f"({limit}); store large outputs elsewhere (a file, object storage) and return a "
        "reference, or raise OFFLOAD_MAX_RESULT_BYTES",
        "traceback": "",
    }
