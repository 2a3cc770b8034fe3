"""Job ids: 32 hex characters, sortable by creation time (48-bit ms time + 80 random bits)."""

from __future__ import annotations

import os
import time


def new_job_id(now: float | None = None) -> str:
    """A fresh, time-ordered, globally unique job id."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{os.urandom(10).hex()}"


def new_worker_id(name: str) -> str:
    """A worker incarnation id: the given name plus pid and 6 random bytes; never reused."""
    return f"{name}-{os.getpid()}-{os.urandom(6).hex()}"
