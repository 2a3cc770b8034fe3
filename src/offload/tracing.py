"""OpenTelemetry tracing of jobs, after the messaging semantic conventions (``offload[otel]``).

Off by default, and then free: nothing here imports ``opentelemetry`` until a function below
is called, and the callers call them only when ``Settings.tracing`` is on
(``App(tracing=True)`` or ``OFFLOAD_TRACING=1``). Only the API package is used; the
application installs an SDK and an exporter (without one, every span is a no-op).

- :func:`stamp`: a PRODUCER span ``send {queue}`` when a job is prepared (Python API, HTTP
  API, periodic ticks; ``send workflow`` for a workflow), whose W3C context (``traceparent``,
  ``tracestate``) is stored in the job's meta under :data:`TRACE_KEY`.
- :func:`start_attempt`: a CONSUMER span ``process {queue}`` around one attempt in the worker,
  a child of the stored context and the current span while the job's code runs; its end
  (:meth:`Attempt.finish`) records the outcome, retries, lease loss, cancel and timeout.
- :func:`continue_trace` / :func:`leave`: make an incoming request's W3C context (headers) the
  current one, so the jobs a request submits join its trace; :class:`TraceContextMiddleware`
  does it for ASGI applications (the FastAPI integration and ``offload serve``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from offload.errors import ConfigurationError

if TYPE_CHECKING:
    from types import ModuleType

    from opentelemetry.trace import Span, Tracer

    from offload.core.job import JobRecord

#: The one meta entry that carries a job's trace context: ``{"traceparent": ..., ...}``.
#: The HTTP API never shows meta; the Python API shows it raw on ``job.record.meta``.
TRACE_KEY = "otel"
#: The W3C trace context headers (lower case).
HEADERS = ("traceparent", "tracestate")
SYSTEM = "offload"
INSTRUMENTATION = "offload"
#: The span event that ends an attempt, by outcome.
OUTCOME_EVENTS = {
    "succeeded": "succeeded",
    "failed": "failed",
    "retry": "retry",
    "cancelled": "cancelled",
    "released": "released",
    "lost": "lease_lost",
}


@functools.cache
def _otel() -> tuple[ModuleType, ModuleType, ModuleType]:
    """The opentelemetry modules (trace, context, propagate), imported on first use."""
    try:
        from opentelemetry import context, propagate, trace
    except ImportError:
        raise ConfigurationError(
            "tracing is on (App(tracing=True) or OFFLOAD_TRACING=1) but opentelemetry-api is "
            "not installed: pip install 'offload[otel]'"
        ) from None
    return trace, context, propagate


def check_installed() -> None:
    """Raise ConfigurationError unless opentelemetry-api can be imported."""
    _otel()


def _tracer() -> Tracer | None:
    """offload's tracer; None while no SDK is installed (every span would be a no-op)."""
    trace = _otel()[0]
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None
    from offload._version import __version__

    tracer: Tracer = trace.get_tracer(INSTRUMENTATION, __version__)
    return tracer


def _attributes(queue: str, job_id: str, task: str, tenant: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
        "messaging.message.id": job_id,
        "offload.task.name": task,
        "offload.tenant": tenant,
    }


def stamp(
    meta: dict[str, Any], *, queue: str | None, job_id: str, task: str, tenant: str
) -> dict[str, Any]:
    """``meta`` with the context of a new PRODUCER span (``send {queue}``), which is ended at
    once: it marks the moment the job was prepared, in the caller's trace."""
    trace, _, propagate = _otel()
    tracer = _tracer()
    if tracer is None:
        return meta
    attributes = _attributes(queue or "", job_id, task, tenant, "send")
    if queue is None:
        del attributes["messaging.destination.name"]
    span = tracer.start_span(
        f"send {queue or 'workflow'}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    )
    carrier: dict[str, str] = {}
    if span.get_span_context().is_valid:  # else (no SDK) there is nothing to pass on
        propagate.inject(carrier, context=trace.set_span_in_context(span))
    span.end()
    if not carrier:  # no SDK (a no-op span): nothing worth storing
        return meta
    return {**meta, TRACE_KEY: carrier}


def _carrier(meta: Mapping[str, Any]) -> dict[str, str]:
    stored = meta.get(TRACE_KEY)
    if not isinstance(stored, dict):
        return {}
    return {k: v for k, v in stored.items() if isinstance(k, str) and isinstance(v, str)}


class Attempt:
    """The CONSUMER span of one attempt, current in the job's task until :meth:`finish`."""

    __slots__ = ("_done", "_token", "span")

    def __init__(self, span: Span, token: object) -> None:
        self.span = span
        self._token = token
        self._done = False

    def finish(
        self,
        kind: str,
        *,
        stop_reason: str | None = None,
        reason: str | None = None,
        error: Mapping[str, Any] | None = None,
        retry_in: float | None = None,
    ) -> None:
        """End the span with the attempt's outcome (``kind``: succeeded, failed, retry,
        cancelled, released, lost; ``reason``: the failure's, e.g. ``timeout``)."""
        if self._done:
            return
        self._done = True
        trace, context, _ = _otel()
        span = self.span
        if span.is_recording():  # else (no SDK, or not sampled) every call below is a no-op
            self._record(trace, kind, stop_reason, reason, error, retry_in)
        span.end()
        try:
            context.detach(self._token)
        except Exception:  # another task's context: the span is ended all the same
            pass

    def _record(
        self,
        trace: ModuleType,
        kind: str,
        stop_reason: str | None,
        reason: str | None,
        error: Mapping[str, Any] | None,
        retry_in: float | None,
    ) -> None:
        span = self.span
        span.set_attribute("offload.outcome", kind)
        if reason == "timeout":
            span.add_event("timeout")
        if error is not None and kind in ("failed", "retry"):
            span.set_attribute("error.type", str(error.get("type", "Exception")))
            span.add_event(
                "exception",
                {
                    "exception.type": str(error.get("type", "")),
                    "exception.message": str(error.get("message", ""))[:1000],
                },
            )
        if stop_reason == "lost" and kind != "lost":
            span.add_event("lease_lost")
        details = {"offload.retry_in": float(retry_in or 0.0)} if kind == "retry" else None
        span.add_event(OUTCOME_EVENTS.get(kind, kind), details)
        if kind == "succeeded":
            span.set_status(trace.Status(trace.StatusCode.OK))
        elif kind in ("failed", "retry", "lost"):
            message = str((error or {}).get("message", kind))[:200]
            span.set_status(trace.Status(trace.StatusCode.ERROR, message))


def start_attempt(record: JobRecord, worker_id: str) -> Attempt | None:
    """Start the CONSUMER span of the attempt ``record`` (just claimed) and make it current;
    None without an SDK."""
    trace, context, propagate = _otel()
    tracer = _tracer()
    if tracer is None:
        return None
    parent = propagate.extract(_carrier(record.meta))
    attributes = _attributes(record.queue, record.id, record.task, record.tenant, "process")
    attributes["offload.job.attempt"] = record.attempts
    attributes["offload.worker.id"] = worker_id
    span = tracer.start_span(
        f"process {record.queue}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    )
    return Attempt(span, context.attach(trace.set_span_in_context(span)))


def continue_trace(headers: Mapping[str, str]) -> object | None:
    """Make the W3C context in ``headers`` the current one, unless a span is already current
    (an OpenTelemetry instrumentation of the framework started one). Returns the token for
    :func:`leave`, None when nothing was attached."""
    trace, context, propagate = _otel()
    if trace.get_current_span().get_span_context().is_valid:
        return None
    if not headers.get("traceparent"):
        return None
    token: object = context.attach(propagate.extract(headers))
    return token


def leave(token: object | None) -> None:
    """Undo :func:`continue_trace`."""
    if token is not None:
        _otel()[1].detach(token)


ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], ASGIReceive, ASGISend], Awaitable[None]]


class TraceContextMiddleware:
    """ASGI middleware: each HTTP request's ``traceparent``/``tracestate`` headers become the
    current context while it is served (see :func:`continue_trace`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: ASGIReceive, send: ASGISend
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers", ())
            if k.decode("latin-1") in HEADERS
        }
        token = continue_trace(headers)
        try:
            await self.app(scope, receive, send)
        finally:
            leave(token)
