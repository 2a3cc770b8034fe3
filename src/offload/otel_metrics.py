"""OpenTelemetry metrics of the jobs submitted and run, with ``offload[otel]``.

On when tracing is (``Settings.tracing``, ``OFFLOAD_TRACING=1``) or alone with
``Settings.otel_metrics`` (``OFFLOAD_OTEL_METRICS=1``); off, opentelemetry is not imported.
They go to the global MeterProvider (``opentelemetry.metrics.set_meter_provider``; without
an SDK every instrument is a no-op), under the meter ``offload``. The messaging semantic
conventions' names where they exist, offload's own where they do not (the same measures as
the Prometheus job metrics of :mod:`offload.job_metrics`):

- ``messaging.client.sent.messages`` (counter): jobs prepared for a submit (as the ``send``
  span: an idempotent replay counts again)
- ``messaging.client.consumed.messages`` (counter): attempts a worker started
- ``messaging.process.duration`` (histogram, s): from claim to the end of the job's code, with
  ``offload.outcome`` and, unless it succeeded, ``error.type`` (the outcome)
- ``offload.job.queue_wait.duration`` (histogram, s): from due to claim, on the backend's clock
- ``offload.jobs.in_flight`` (up-down counter): jobs claimed and not yet recorded
- ``offload.job.retries``, ``offload.job.leases_lost`` (counters): attempts that ended so
- ``offload.lease.expiries`` (observable counter): jobs whose expired lease this process's
  workers reaped

Every one carries ``messaging.system`` ("offload"), ``messaging.destination.name`` (the
queue) and ``offload.task.name``; the messaging ones ``messaging.operation.name`` too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from offload.errors import ConfigurationError
from offload.job_metrics import BUCKETS

SYSTEM = "offload"
Attrs = dict[str, str]


class Instruments:
    """The instruments of this process, made once (see :func:`instruments`)."""

    def __init__(self) -> None:
        from opentelemetry import metrics

        from offload._version import __version__

        meter = metrics.get_meter("offload", __version__)
        buckets = list(BUCKETS)
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", "{message}", "Jobs prepared for a submit."
        )
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages", "{message}", "Attempts a worker started."
        )
        self.process = meter.create_histogram(
            "messaging.process.duration",
            "s",
            "Seconds from claim to the end of the job's code.",
            explicit_bucket_boundaries_advisory=buckets,
        )
        self.wait = meter.create_histogram(
            "offload.job.queue_wait.duration",
            "s",
            "Seconds from a job being due to its claim.",
            explicit_bucket_boundaries_advisory=buckets,
        )
        self.in_flight = meter.create_up_down_counter(
            "offload.jobs.in_flight", "{job}", "Jobs claimed and not yet recorded."
        )
        self.retries = meter.create_counter(
            "offload.job.retries", "{attempt}", "Attempts that ended in a retry."
        )
        self.lost = meter.create_counter(
            "offload.job.leases_lost", "{attempt}", "Attempts whose lease was lost."
        )
        self.reaped: dict[str, Callable[[], int]] = {}  # by worker id
        self.gone = 0  # what the workers that ended had reaped
        meter.create_observable_counter(
            "offload.lease.expiries",
            [self._observe_reaped],
            "{job}",
            "Jobs whose expired lease the workers of this process reaped.",
        )
        self._attrs: dict[tuple[str, ...], Attrs] = {}

    def _observe_reaped(self, options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        yield Observation(self.gone + sum(count() for count in list(self.reaped.values())))

    def attrs(self, task: str, queue: str, operation: str = "", outcome: str = "") -> Attrs:
        """The attributes of one measure, made once per combination."""
        key = (task, queue, operation, outcome)
        found = self._attrs.get(key)
        if found is None:
            found = {
                "messaging.system": SYSTEM,
                "messaging.destination.name": queue,
                "offload.task.name": task,
            }
            if operation:
                found["messaging.operation.name"] = operation
            if outcome:
                found["offload.outcome"] = outcome
                if outcome != "succeeded":
                    found["error.type"] = outcome
            self._attrs[key] = found
        return found

    def submitted(self, task: str, queue: str) -> None:
        self.sent.add(1, self.attrs(task, queue, "send"))

    def started(self, task: str, queue: str, wait: float | None) -> None:
        self.consumed.add(1, self.attrs(task, queue, "process"))
        self.in_flight.add(1, self.attrs(task, queue))
        if wait is not None:
            self.wait.record(max(0.0, wait), self.attrs(task, queue))

    def ended(self, task: str, queue: str, outcome: str, ran: float | None) -> None:
        self.in_flight.add(-1, self.attrs(task, queue))
        if ran is not None:
            self.process.record(ran, self.attrs(task, queue, "process", outcome))
        if outcome == "retry":
            self.retries.add(1, self.attrs(task, queue))
        elif outcome == "lost":
            self.lost.add(1, self.attrs(task, queue))

    def add_reaper(self, key: str, count: Callable[[], int]) -> None:
        self.reaped[key] = count

    def discard_reaper(self, key: str) -> None:
        count = self.reaped.pop(key, None)
        if count is not None:
            self.gone += count()


@functools.cache
def instruments() -> Instruments:
    """This process's instruments; ConfigurationError when opentelemetry-api is missing."""
    try:
        import opentelemetry.metrics  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "OpenTelemetry metrics are on (tracing, or OFFLOAD_OTEL_METRICS=1) but "
            "opentelemetry-api is not installed: pip install 'offload[otel]'"
        ) from None
    return Instruments()
