"""Options, each declared once: ``TaskOptions`` (how a task's jobs run, ``@app.task(...)`` and
``@app.periodic(...)``) and ``SubmitOptions`` (one submission, ``task.options(...)``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack

from offload.core import validate
from offload.core.bounds import check_delay, check_priority
from offload.core.codec import to_json_value
from offload.core.job import DEFAULT_QUEUE
from offload.core.limits import Limits, check_cap, parse_rate
from offload.core.retention import Retention
from offload.core.retry import RetryPolicy
from offload.core.task import ExecutorKind, TaskSpec, infer_executor
from offload.errors import ConfigurationError, SerializationError


@dataclass(frozen=True)
class TaskOptions:
    """How a task's jobs run: the options of ``@app.task(...)``, with their defaults.

    ``executor`` defaults to "async" for ``async def`` and "thread" otherwise; use "process"
    for CPU-bound work. ``retries`` counts re-runs after a failure, spaced by exponential
    backoff starting at ``retry_backoff`` seconds (with jitter). Global limits, held by the
    backend across every worker: ``concurrency`` (running jobs of this task),
    ``key_concurrency`` (running jobs per ``concurrency_key``), ``rate_limit`` and
    ``key_rate_limit`` (starts per period, e.g. ``"60/m"``). The limits are checked here; the
    rest (which needs the task's name for its messages) by ``TaskSpec``.
    """

    name: str | None = None
    queue: str | None = None
    executor: ExecutorKind | None = None
    retries: int = 0
    retry_backoff: float = 1.0
    retry_backoff_max: float = 300.0
    timeout: float | None = None
    priority: int = 0
    result_ttl: float | None = None
    concurrency: int | None = None
    key_concurrency: int | None = None
    rate_limit: str | None = None
    key_rate_limit: str | None = None
    retention: Retention | None = None

    def __post_init__(self) -> None:
        self.limits()

    @classmethod
    def of(cls, caller: str, keywords: Mapping[str, Any], allowed: type[Any]) -> TaskOptions:
        """The options given to ``caller`` as ``keywords``, which must be keys of the TypedDict
        ``allowed`` (the TypeError Python raises for an unknown keyword argument, else)."""
        if unknown := sorted(keywords.keys() - allowed.__optional_keys__):
            raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
        return cls(**keywords)

    def limits(self) -> Limits | None:
        """The global caps and rate limits (None: unlimited); ValueError names a bad one."""
        limits = Limits(
            concurrency=check_cap(self.concurrency, "concurrency"),
            key_concurrency=check_cap(self.key_concurrency, "key_concurrency"),
            rate=_rate(self.rate_limit, "rate_limit"),
            key_rate=_rate(self.key_rate_limit, "key_rate_limit"),
        )
        return limits if limits.any else None

    def replace(self, **changes: Unpack[TaskKeywords]) -> TaskOptions:
        """These options with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def spec(self, func: Callable[..., Any]) -> TaskSpec:
        """The spec of ``func`` registered with these options."""
        return TaskSpec(
            func=func,
            name=self.name or func.__qualname__,
            queue=self.queue or DEFAULT_QUEUE,
            executor=self.executor or infer_executor(func),
            retry=RetryPolicy(
                retries=self.retries,
                base_delay=self.retry_backoff,
                max_delay=self.retry_backoff_max,
            ),
            timeout=self.timeout,
            priority=self.priority,
            result_ttl=self.result_ttl,
            limits=self.limits(),
            retention=self.retention,
        )


class PeriodicKeywords(TypedDict, total=False):
    """The ``TaskOptions`` that ``@app.periodic`` takes, as keyword arguments (a tick has no
    arguments, so no ``concurrency_key`` and no per-key limits)."""

    name: str | None
    queue: str | None
    executor: ExecutorKind | None
    retries: int
    retry_backoff: float
    retry_backoff_max: float
    timeout: float | None
    priority: int
    result_ttl: float | None
    concurrency: int | None
    rate_limit: str | None
    retention: Retention | None


class TaskKeywords(PeriodicKeywords, total=False):
    """Every ``TaskOptions`` field, as the keyword arguments of ``@app.task`` (the typing of
    ``**options``; tests/core/test_options.py keeps it in step with the dataclass)."""

    key_concurrency: int | None
    key_rate_limit: str | None


def _rate(text: str | None, what: str) -> float | None:
    return None if text is None else parse_rate(text, what=what)


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

    __slots__ = (
        "concurrency_key",
        "connection",
        "delay",
        "idempotency_key",
        "meta",
        "priority",
        "queue",
        "run_at",
        "session",
        "tenant",
    )

    def __init__(
        self,
        *,
        priority: int | None = None,
        delay: float | None = None,
        run_at: datetime | float | None = None,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        queue: str | None = None,
        tenant: str | None = None,
        meta: dict[str, Any] | None = None,
        connection: Any = None,
        session: Any = None,
    ) -> None:
        """``connection`` (a psycopg connection) or ``session`` (a SQLAlchemy session): submit
        inside the caller's open transaction (PostgreSQL only, see offload.transactional)."""
        validate.check_schedule(delay, run_at)
        if connection is not None and session is not None:
            raise ConfigurationError("give connection= or session=, not both")
        self.connection = connection
        self.session = session
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

    @property
    def transactional(self) -> bool:
        """Whether the job joins the caller's transaction (``connection=`` or ``session=``)."""
        return self.connection is not None or self.session is not None
