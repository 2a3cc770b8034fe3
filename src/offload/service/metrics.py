"""Prometheus metrics of one service instance, in a registry of its own (no global state).

- ``offload_jobs_submitted_total{task}``: jobs accepted through the API
- ``offload_http_requests_total{method,route,status}``: answered requests (route template)
- ``offload_http_request_duration_seconds{method,route}``: time to answer, histogram
- ``offload_queue_jobs{queue,state}``: jobs per queue and state, read from the backend on
  every scrape (counts of the whole store, all tenants)
- ``offload_finished_jobs{queue}``: ended jobs stored per queue (what retention bounds)
- ``offload_finished_bytes``: their estimated bytes (Redis: sampled MEMORY USAGE; SQLite: used
  pages shared out by rows), read on every scrape
- ``offload_queue_oldest_ready_seconds{queue}``: how long the oldest ready job of each queue
  (queued, or scheduled and due) has waited, read at scrape; 0 when none waits. The number to
  alert on: it grows when workers are missing, stuck or too few, whatever the queue's size
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from offload import job_metrics
from offload.backends.storage import Storage
from offload.core.job import QueueStats
from offload.core.states import State

CONTENT_TYPE = CONTENT_TYPE_LATEST

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's metrics and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs_submitted = Counter(
            "offload_jobs_submitted_total",
            "Jobs accepted through the HTTP API.",
            ["task"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "offload_http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "offload_http_request_duration_seconds",
            "Seconds taken to answer HTTP requests, by method and route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.queue_jobs = Gauge(
            "offload_queue_jobs",
            "Jobs in the backend by queue and state (read at scrape time).",
            ["queue", "state"],
            registry=self.registry,
        )
        self.oldest_ready = Gauge(
            "offload_queue_oldest_ready_seconds",
            "Seconds the oldest ready job of the queue has waited since it was due "
            "(0: none ready; read at scrape time).",
            ["queue"],
            registry=self.registry,
        )

        self.finished_jobs = Gauge(
            "offload_finished_jobs",
            "Ended jobs stored per queue (read at scrape time).",
            ["queue"],
            registry=self.registry,
        )
        self.finished_bytes = Gauge(
            "offload_finished_bytes",
            "Estimated bytes of the ended jobs stored (read at scrape time).",
            registry=self.registry,
        )

    def set_storage(self, storage: Storage) -> None:
        """Replace the finished-job gauges with what ``storage`` measured."""
        self.finished_jobs.clear()
        for queue, count in storage.finished.items():
            self.finished_jobs.labels(queue).set(count)
        self.finished_bytes.set(storage.bytes)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def set_queue_stats(self, stats: list[QueueStats]) -> None:
        """Replace the queue gauges with ``stats`` (queues that vanished are dropped)."""
        self.queue_jobs.clear()
        self.oldest_ready.clear()
        for queue in stats:
            for state in State:
                self.queue_jobs.labels(queue.queue, state.value).set(queue.count(state))
            self.oldest_ready.labels(queue.queue).set(queue.oldest_ready_age or 0.0)

    def render(self) -> bytes:
        """The registry in Prometheus text format, with the job metrics of the workers that
        run in this process (``offload up``, an embedded worker; see offload.job_metrics)."""
        return generate_latest(self.registry) + job_metrics.render_global()
