"""Turning one call into a :class:`NewJob`: arguments checked and encoded, options applied,
the idempotency fingerprint, the request id and (with tracing on) the trace context stamped into
meta. ``App.prepare`` delegates here; nothing is stored."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from offload import otel_metrics, tracing
from offload.core.ids import new_job_id
from offload.core.job import NewJob
from offload.core.options import SubmitOptions
from offload.core.task import TaskSpec
from offload.logs import REQUEST_ID
from offload.settings import Settings


def prepare_job(
    spec: TaskSpec,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    options: SubmitOptions,
    settings: Settings,
) -> NewJob:
    """The job ``spec`` called with ``args``/``kwargs`` and ``options`` would store."""
    json_args, json_kwargs = spec.encode_arguments(args, kwargs)
    queue = options.queue or spec.queue
    priority = spec.priority if options.priority is None else options.priority
    fingerprint = None
    if options.idempotency_key is not None:
        # Everything that shapes the job: the same key with any of it changed is a 409.
        body = orjson.dumps(
            [
                spec.name,
                json_args,
                json_kwargs,
                queue,
                priority,
                options.delay,
                options.run_at,
                options.concurrency_key,
            ],
            option=orjson.OPT_SORT_KEYS,
        )
        fingerprint = hashlib.sha256(body).hexdigest()
    job_id, tenant = new_job_id(), options.tenant or "default"
    meta = _with_request_id(options.meta)
    if settings.tracing:  # a PRODUCER span; its context is stored in the job's meta
        meta = tracing.stamp(meta, queue=queue, job_id=job_id, task=spec.name, tenant=tenant)
    if settings.tracing or settings.otel_metrics:
        otel_metrics.instruments().submitted(spec.name, queue)
    return NewJob(
        id=job_id,
        task=spec.name,
        args=json_args,
        kwargs=json_kwargs,
        queue=queue,
        priority=priority,
        delay=max(0.0, options.delay or 0.0),
        run_at=options.run_at,
        idempotency_key=options.idempotency_key,
        fingerprint=fingerprint,
        concurrency_key=options.concurrency_key,
        tenant=tenant,
        meta=meta,
        result_ttl=settings.result_ttl if spec.result_ttl is None else spec.result_ttl,
        limits=spec.limits,
    )


def _with_request_id(meta: dict[str, Any] | None) -> dict[str, Any]:
    """The job's meta, with the id of the request being served (if any) as ``request_id``."""
    request_id = REQUEST_ID.get()
    if request_id is None or (meta and "request_id" in meta):
        return dict(meta or {})
    return {**(meta or {}), "request_id": request_id}
