"""Turning the Redis backend's replies into offload values, and its URLs into settings.

Stored data that is not what offload wrote (a missing field, text that is not JSON) raises
:class:`~offload.errors.BackendError` naming the key, so a worker reports it instead of crashing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from offload.core.job import JobRecord, Transition, WorkerInfo
from offload.core.states import Reason, State
from offload.errors import BackendError, ConfigurationError

#: Options offload reads from a ``redis://`` URL; the rest go to redis-py.
OFFLOAD_OPTIONS = ("prefix", "strict")
DEFAULT_PREFIX = "offload"


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A parsed ``redis://`` URL: what redis-py connects to, and offload's own options."""

    connect_url: str  # without offload's options (and safe to hand to redis-py)
    shown: str  # host:port/db, without credentials, for messages
    prefix: str
    strict: bool
    has_password: bool


def parse_redis_url(url: str) -> RedisURL:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(f"{url!r} is not a Redis URL; use redis://host:6379/0")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(
            f"Redis URL {_hide_password(url)!r} has an invalid port; use redis://host:6379/0"
        ) from None
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigurationError(
            f"Redis URL {_hide_password(url)!r}: the path must be a database number, like /0"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    prefix = options.pop("prefix", DEFAULT_PREFIX)
    if not prefix or any(c in prefix for c in "{}"):
        raise ConfigurationError(
            f"Redis URL option prefix={prefix!r} must be non-empty and without braces"
        )
    strict = options.pop("strict", "false").lower() in ("1", "true", "yes", "on")
    connect = urlunsplit(parts._replace(query=urlencode(options)))
    host = parts.hostname or "localhost"
    shown = parts.path if parts.scheme == "unix" else f"{host}:{port or 6379}/{db or 0}"
    return RedisURL(connect, shown, prefix, strict, parts.password is not None)


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def with_strict(url: str) -> str:
    """The same Redis URL with ``strict=true`` (refuse to start on unsafe server settings)."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    options["strict"] = "true"
    return urlunsplit(parts._replace(query=urlencode(options)))


def pairs(flat: Sequence[str]) -> dict[str, str]:
    """A flat HGETALL reply as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


def job_from_hash(h: dict[str, str], where: str) -> JobRecord:
    """One job hash as a JobRecord; BackendError when it is not a job offload wrote."""
    try:
        get = h.get
        result = get("result")
        error = get("error")
        return JobRecord(
            id=h["id"],
            task=h["task"],
            queue=h["queue"],
            status=State(h["status"]),
            args=orjson.loads(h["args"]),
            kwargs=orjson.loads(h["kwargs"]),
            priority=int(h["priority"]),
            attempts=int(h["attempts"]),
            losses=int(h["losses"]),
            run_at=float(h["run_at"]),
            created_at=float(h["created_at"]),
            updated_at=float(h["updated_at"]),
            started_at=_float(get("started_at")),
            finished_at=_float(get("finished_at")),
            token=int(h["token"]),
            worker_id=get("worker_id"),
            lease_until=_float(get("lease_until")),
            progress=_float(get("progress")),
            progress_message=get("progress_message"),
            result=None if result is None else orjson.loads(result),
            error=None if error is None else orjson.loads(error),
            cancel_requested=get("cancel_requested") == "1",
            idempotency_key=get("idempotency_key"),
            concurrency_key=get("concurrency_key"),
            tenant=h["tenant"],
            meta=orjson.loads(h["meta"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise BackendError(
            f"corrupt or foreign data under Redis key {where!r}: {type(exc).__name__}: {exc}; "
            "is another program writing under offload's prefix?"
        ) from None


def transition_from_json(job_id: str, raw: str) -> Transition:
    at, before, after, reason, attempt, token, worker, detail = orjson.loads(raw)
    return Transition(
        job_id,
        float(at),
        State(before) if before else None,
        State(after),
        Reason(reason),
        int(attempt),
        int(token),
        worker or None,
        detail or None,
    )


def worker_to_json(worker: WorkerInfo) -> bytes:
    return orjson.dumps(
        {
            "id": worker.id,
            "name": worker.name,
            "host": worker.host,
            "pid": worker.pid,
            "queues": worker.queues,
            "concurrency": worker.concurrency,
            "started_at": worker.started_at,
            "running": worker.running,
            "processed": worker.processed,
        }
    )


def worker_from_json(raw: str, last_seen: str) -> WorkerInfo:
    data: dict[str, Any] = orjson.loads(raw)
    return WorkerInfo(last_seen=float(last_seen), **data)


def opt(value: str | None) -> str:
    """An optional string as a script argument: "" for None, else "=" + value."""
    return "" if value is None else "=" + value
