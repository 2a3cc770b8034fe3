"""Per-submission options (``task.options(...)``): validated once, here, for every submit path."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from offload.core import validate
from offload.core.bounds import check_delay, check_priority
from offload.core.codec import to_json_value
from offload.errors import SerializationError


def _plain_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` as plain JSON data, else ValueError (NaN would be stored as null)."""
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict of JSON values, not {type(meta).__name__}")
    try:
        plain: dict[str, Any] = to_json_value(meta)
    except SerializationError as exc:
        raise ValueError(f"meta is not JSON: {exc}") from None
    return plain


class SubmitOptions:
    """Per-submission options (``task.options(...)``)."""

    __slots__ = ("concurrency_key", "delay", "idempotency_key", "meta", "priority", "queue",
                 "run_at", "tenant")  # fmt: skip

    def __init__(
        self, *, priority: int | None = None, delay: float | None = None,
        run_at: datetime | float | None = None, idempotency_key: str | None = None,
        concurrency_key: str | None = None, queue: str | None = None, tenant: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        validate.check_schedule(delay, run_at)
        self.priority = None if priority is None else check_priority(priority)
        self.delay = None if delay is None else check_delay(delay)
        self.run_at = None if run_at is None else validate.run_at_epoch(run_at)
        self.idempotency_key = (
            None if idempotency_key is None else validate.idempotency_key(idempotency_key)
        )
        self.concurrency_key = (
            None if concurrency_key is None else validate.concurrency_key(concurrency_key)
        )
        self.queue = None if queue is None else validate.queue_name(queue)
        self.tenant = tenant
        self.meta = None if meta is None else _plain_meta(meta)
