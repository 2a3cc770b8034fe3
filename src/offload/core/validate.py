"""Checks on what a submitter sends, shared by the HTTP schemas and the Python client.

Each check raises ``ValueError`` with a message that says what to send instead (pydantic turns
it into a 422; the client lets it through). Written once, so both doors refuse the same input.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

#: 9999-12-31T23:59:59Z: the latest ``run_at`` (every backend and every client can hold it).
MAX_EPOCH = 253402300799.0
#: Lists and objects nested deeper than this in arguments or results are refused.
MAX_DEPTH = 64
#: Queue names: letters, digits and ``_ . : -``, 1 to 100 characters.
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
QUEUE_NAME_RULE = "1 to 100 characters among letters, digits and _ . : -"
#: Concurrency keys: printable ASCII with no spaces, 1 to 200 characters.
KEY = re.compile(r"[!-~]{1,200}")
KEY_RULE = "1 to 200 printable ASCII characters, no spaces or control characters"


def run_at_epoch(value: object) -> float:
    """``run_at`` as epoch seconds: an aware or naive (UTC) datetime, an ISO 8601 string, or a
    number of seconds (never milliseconds, never a boolean), from 1970 to 9999-12-31 UTC."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | datetime):
        raise ValueError(
            f"run_at must be an ISO 8601 time or epoch seconds, not {type(value).__name__}"
        )
    if isinstance(value, str):
        value = _parse_iso(value)
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        seconds = when.timestamp()
    else:
        try:
            seconds = float(value)
        except OverflowError:  # a whole number beyond any float
            seconds = math.inf
    if not 0 <= seconds <= MAX_EPOCH:  # NaN fails this too
        raise ValueError(
            f"run_at {str(value)[:40]} is out of range: it must fall between 1970-01-01T00:00:00Z "
            f"(0) and 9999-12-31T23:59:59Z ({MAX_EPOCH:.0f}) in epoch seconds"
        )
    return seconds


def _parse_iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"run_at {text[:64]!r} is not an ISO 8601 time such as 2030-01-31T09:00:00Z"
        ) from None


def check_schedule(delay: float | None, run_at: object) -> None:
    """A job waits for ``delay`` or until ``run_at``, not both (one would be dropped)."""
    if delay is not None and run_at is not None:
        raise ValueError("give either delay or run_at, not both")


def queue_name(value: str) -> str:
    """A queue name as given, if it keeps to :data:`QUEUE_NAME_RULE`."""
    if not isinstance(value, str) or not QUEUE_NAME.fullmatch(value):
        raise ValueError(f"queue name {_show(value)} is invalid: use {QUEUE_NAME_RULE}")
    return value


def concurrency_key(value: str) -> str:
    """A concurrency key as given, if it keeps to :data:`KEY_RULE`."""
    if not isinstance(value, str) or not KEY.fullmatch(value):
        raise ValueError(f"concurrency_key {_show(value)} is invalid: use {KEY_RULE}")
    return value


#: The longest ``Idempotency-Key`` header the HTTP API takes.
IDEMPOTENCY_KEY_MAX = 255


def idempotency_key(value: str) -> str:
    """An idempotency key as given, if it is a non-empty string (an empty key, say from a
    missing header, would make every such submit return the first one's job)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"idempotency_key {_show(value)} is invalid: use a non-empty string")
    return value


def _show(value: object) -> str:
    return repr(value)[:80]


def check_json(value: Any, what: str) -> None:
    """Refuse NaN and infinities (JSON has none; they would be stored as null) and nesting
    deeper than :data:`MAX_DEPTH` anywhere in ``value``. Walks without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{what} holds {item}, which JSON cannot represent; send a number")
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"{what} is nested more than {MAX_DEPTH} levels deep; flatten it")
        stack.extend((child, depth + 1) for child in children)
