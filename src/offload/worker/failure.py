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
        "message": str(exc) or type(exc).__name__,
        "traceback": text,
    }
