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
