"""What a worker tells the outside about each attempt: Prometheus metrics (offload.job_metrics,
when prometheus-client is installed) and, with ``Settings.tracing``, an OpenTelemetry span
(offload.tracing), and OpenTelemetry metrics with tracing or ``Settings.otel_metrics``
(offload.otel_metrics). The worker calls :meth:`Observer.start` when it begins an attempt,
:meth:`Watch.executed` when the job's code ended, and :meth:`Watch.end` once its outcome is
written (or discarded)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from offload import job_metrics, otel_metrics, tracing
from offload.core.job import JobRecord
from offload.settings import Settings

log = logging.getLogger("offload.worker")


class Watch:
    """One attempt being observed."""

    __slots__ = ("_began", "_metrics", "_otel", "_ran", "_span", "record")

    def __init__(
        self,
        record: JobRecord,
        metrics: job_metrics.JobMetrics | None,
        span: tracing.Attempt | None,
        otel: otel_metrics.Instruments | None = None,
    ) -> None:
        self.record = record
        self._metrics = metrics
        self._otel = otel
        self._span = span
        self._began = time.monotonic()
        self._ran: float | None = None
        if metrics is not None or otel is not None:
            started = record.started_at
            wait = None if started is None else started - record.run_at
            if metrics is not None:
                metrics.started(record.task, record.queue, wait)
            if otel is not None:
                otel.started(record.task, record.queue, wait)

    def executed(self) -> None:
        """The job's code has ended (its outcome is not written yet)."""
        if self._ran is None:
            self._ran = time.monotonic() - self._began

    def end(self, kind: str, *, stop_reason: str | None = None, outcome: Any = None) -> None:
        """The attempt is over: ``kind`` is its outcome as written ("lost": discarded);
        ``outcome`` the runner's Outcome (its error, retry delay and reason)."""
        rec = self.record
        if self._metrics is not None:
            self._metrics.ended(rec.task, rec.queue, kind, self._ran)
            self._metrics = None
        if self._otel is not None:
            self._otel.ended(rec.task, rec.queue, kind, self._ran)
            self._otel = None
        span, self._span = self._span, None
        if span is not None:
            reason = getattr(outcome, "reason", None)
            try:
                span.finish(
                    kind,
                    stop_reason=stop_reason,
                    reason=getattr(reason, "value", None),
                    error=getattr(outcome, "error", None),
                    retry_in=getattr(outcome, "retry_in", None),
                )
            except Exception:  # tracing must never break the worker's bookkeeping
                log.exception("job %s: cannot end its span", rec.id)


class Observer:
    """Starts a :class:`Watch` per attempt; one per worker."""

    def __init__(self, settings: Settings, worker_id: str) -> None:
        self.worker_id = worker_id
        self.tracing = settings.tracing
        self.metrics = job_metrics.JobMetrics.of() if settings.job_metrics else None
        self._port = settings.metrics_port
        self._stop_serving: Callable[[], None] | None = None
        if self.tracing:
            tracing.check_installed()  # a clear error now, not one per job
        on = settings.tracing or settings.otel_metrics
        self.otel = otel_metrics.instruments() if on else None

    def start(self, record: JobRecord) -> Watch:
        span = None
        if self.tracing:
            try:
                span = tracing.start_attempt(record, self.worker_id)
            except Exception:  # tracing must never stop a job from running
                log.exception("job %s: cannot start its span", record.id)
        return Watch(record, self.metrics, span, self.otel)

    def serving(self, reaped: Callable[[], int]) -> None:
        """The worker started: count its reaps, and serve /metrics if ``metrics_port`` is set."""
        if self.otel is not None:
            self.otel.add_reaper(self.worker_id, reaped)
        if self.metrics is None:
            return
        self.metrics.reaped.add(self.worker_id, reaped)
        if self._port:
            try:
                self._stop_serving = job_metrics.serve(self._port)
            except OSError as exc:  # another worker process of this machine serves it
                log.warning("cannot serve metrics on port %d: %s", self._port, exc)

    def stopped(self) -> None:
        if self._stop_serving is not None:
            self._stop_serving()
            self._stop_serving = None
        if self.metrics is not None:
            self.metrics.reaped.discard(self.worker_id)
        if self.otel is not None:
            self.otel.discard_reaper(self.worker_id)
