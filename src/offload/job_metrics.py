"""Prometheus metrics of the jobs a worker runs; prometheus-client is optional.

Recorded by every worker of a process into one registry (prometheus-client's global one by
default), so an embedded worker's jobs show on the web process's ``/metrics``, and a standalone
worker serves them on ``metrics_port`` (``OFFLOAD_METRICS_PORT``):

- ``offload_job_queue_wait_seconds{task,queue}``: from the moment a job was due (created, or
  its delay or retry backoff over) to its claim by a worker, on the backend's clock; histogram
- ``offload_job_run_seconds{task,queue,outcome}``: from claim to the end of the job's code
  (a job claimed ahead of a free slot includes its short wait for one); histogram
- ``offload_jobs_in_flight{task,queue}``: jobs claimed and not yet recorded
- ``offload_job_retries_total{task,queue}``: attempts that ended in a retry
- ``offload_job_leases_lost_total{task,queue}``: attempts whose lease was lost (expired, or
  reclaimed as a dead worker's) before their outcome was written; the outcome was discarded
- ``offload_lease_expiries_total``: jobs whose expired lease this process's workers reaped
  (given back to the queue, or failed as worker_lost), whoever held them

The age of the oldest ready job per queue is a backend read: ``offload serve``'s
``offload_queue_oldest_ready_seconds{queue}`` (offload.service.metrics). With tracing or
``OFFLOAD_OTEL_METRICS=1`` the same measures are OpenTelemetry metrics too (offload.otel_metrics).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

#: Waits and run times from a millisecond to an hour.
BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    900.0,
    3600.0,
)

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, JobMetrics]
_BY_REGISTRY = weakref.WeakKeyDictionary()


class _Reaped:
    """A collector: the sum of the reap counts of every live lease keeper registered."""

    def __init__(self) -> None:
        self.counts: dict[str, Callable[[], int]] = {}  # by worker id
        self.gone = 0  # what the workers that ended had reaped

    def add(self, key: str, count: Callable[[], int]) -> None:
        self.counts[key] = count

    def discard(self, key: str) -> None:
        count = self.counts.pop(key, None)
        if count is not None:
            self.gone += count()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        total = self.gone + sum(count() for count in list(self.counts.values()))
        yield CounterMetricFamily(
            "offload_lease_expiries",
            "Jobs whose expired lease the workers of this process reaped.",
            value=total,
        )


class JobMetrics:
    """The job metrics in one registry; shared by the workers of a process (see :func:`of`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        labels = ["task", "queue"]
        self.wait = Histogram(
            "offload_job_queue_wait_seconds",
            "Seconds from a job being due (created, or its delay over) to its claim.",
            labels,
            buckets=BUCKETS,
            registry=None,
        )
        self.run = Histogram(
            "offload_job_run_seconds",
            "Seconds from a job's claim to the end of its code, by outcome.",
            [*labels, "outcome"],
            buckets=BUCKETS,
            registry=None,
        )
        self.in_flight = Gauge(
            "offload_jobs_in_flight",
            "Jobs claimed by a worker and not yet recorded.",
            labels,
            registry=None,
            multiprocess_mode="livesum",
        )
        self.retries = Counter(
            "offload_job_retries", "Attempts that ended in a retry.", labels, registry=None
        )
        self.lost = Counter(
            "offload_job_leases_lost",
            "Attempts whose lease was lost before their outcome was written.",
            labels,
            registry=None,
        )
        self.reaped = _Reaped()
        self._children: dict[tuple[object, ...], Any] = {}
        #: a registry of these metrics alone, what ``/metrics`` of a web process adds
        self.own = CollectorRegistry(auto_describe=True)
        for collector in (
            self.wait,
            self.run,
            self.in_flight,
            self.retries,
            self.lost,
            self.reaped,
        ):
            registry.register(collector)
            self.own.register(collector)

    @classmethod
    def of(cls, registry: CollectorRegistry | None = None) -> JobMetrics | None:
        """The job metrics of ``registry`` (default: the global one), made on first use;
        None when prometheus-client is not installed."""
        try:
            import prometheus_client
        except ImportError:
            return None
        registry = registry if registry is not None else prometheus_client.REGISTRY
        found = _BY_REGISTRY.get(registry)
        if found is None:
            found = _BY_REGISTRY[registry] = cls(registry)
        return found

    def _child(self, metric: Any, *labels: str) -> Any:
        """The labelled child of ``metric``, looked up once: the lookup costs more than an
        observation."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def started(self, task: str, queue: str, wait: float | None) -> None:
        self._child(self.in_flight, task, queue).inc()
        if wait is not None:
            self._child(self.wait, task, queue).observe(max(0.0, wait))

    def ended(self, task: str, queue: str, outcome: str, ran: float | None) -> None:
        self._child(self.in_flight, task, queue).dec()
        if ran is not None:
            self._child(self.run, task, queue, outcome).observe(ran)
        if outcome == "retry":
            self._child(self.retries, task, queue).inc()
        elif outcome == "lost":
            self._child(self.lost, task, queue).inc()


def render_global() -> bytes:
    """The job metrics of the global registry, if a worker of this process made them."""
    try:
        from prometheus_client import REGISTRY, generate_latest
    except ImportError:
        return b""
    found = _BY_REGISTRY.get(REGISTRY)
    return b"" if found is None else generate_latest(found.own)


def serve(port: int, host: str = "0.0.0.0") -> Callable[[], None]:
    """Serve the global registry's metrics over HTTP on ``port`` (a standalone worker), in a
    thread; returns the function that stops it."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
