"""Settings: one value object, read from the environment only at the edges (CLI, App())."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from offload.core.retention import Retention, RetentionPolicy
from offload.errors import ConfigurationError

DEFAULT_BACKEND = "sqlite:///offload.db"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable, with its one default. Env var: ``OFFLOAD_`` + the field name upper-cased."""

    backend: str = DEFAULT_BACKEND
    #: seconds a claim is valid without renewal; a dead worker's job is retried after this
    lease_seconds: float = 30.0
    #: seconds between lease renewals; 0 means a third of lease_seconds
    renew_interval: float = 0.0
    #: seconds between sweeps for expired leases, done by every worker; 0: a third of the lease
    reap_interval: float = 0.0
    #: seconds between a worker's heartbeats (sent by its lease thread, like renewals)
    heartbeat_interval: float = 1.0
    #: seconds without a heartbeat after which a worker is presumed dead: any live worker then
    #: reclaims its jobs, long before their leases expire. A worker that cannot heartbeat for
    #: this long stops its own jobs first (fencing), so a live worker's job never runs twice
    dead_after: float = 5.0
    #: a job that was running on this many workers when they died runs alone on its worker
    #: (nothing else runs beside it); with fewer losses it runs beside other jobs. 1 is the
    #: cautious choice: every job caught in a worker's death then runs alone, one at a time
    run_alone_after: int = 2
    #: seconds between checks for cancel requests of running jobs
    cancel_poll: float = 0.5
    #: seconds running jobs get to finish after SIGTERM before they are released
    shutdown_grace: float = 25.0
    #: job slots per worker process
    concurrency: int = 10
    #: threads of the event loop's default executor in a worker (``asyncio.to_thread``,
    #: ``run_in_executor(None, ...)`` in async tasks); 0: as many as its slots
    loop_threads: int = 0
    #: longest pause between claim attempts of an idle worker (a fallback; wake-ups come sooner)
    idle_wait: float = 1.0
    #: seconds every finished job (its result or error and its history) is kept, whatever
    #: its outcome, unless its task sets its own; None: kept by outcome (retain_* below)
    result_ttl: float | None = None
    #: seconds a job that succeeded is kept after it ended (unless it has a result_ttl)
    retain_succeeded: float = 24 * 3600.0
    #: seconds a job that failed is kept after it ended (unless it has a result_ttl)
    retain_failed: float = 7 * 24 * 3600.0
    #: seconds a cancelled job is kept after it ended (unless it has a result_ttl)
    retain_cancelled: float = 7 * 24 * 3600.0
    #: finished jobs kept per queue at most, the oldest beyond pruned first; 0: no cap
    max_finished: int = 100_000
    #: seconds between a worker's sweeps for expired jobs (0: this worker does not prune)
    prune_interval: float = 60.0
    #: jobs one sweep deletes at most (the next sweep goes on)
    prune_batch: int = 500
    #: jobs claimed per backend round trip at most; -1: the backend's own (32; PostgreSQL 128)
    claim_batch: int = -1
    #: jobs a worker may claim ahead of its free slots while its jobs are short (see
    #: docs/guide/workers.md); they wait in memory for a slot; -1: sized by its jobs' run time
    prefetch: int = -1
    log_format: str = "text"
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8000
    tokens: str | None = None
    #: refuse to start when the backend's server may lose acknowledged jobs (Redis: eviction
    #: on, or persistence off); otherwise that is logged as a warning
    strict: bool = False
    #: OpenTelemetry spans for submits and attempts (docs/guide/observability.md; needs
    #: ``offload[otel]``); off: opentelemetry is not even imported
    tracing: bool = False
    #: port on which a worker serves its job metrics (Prometheus text; 0: not served). An
    #: embedded worker's metrics are on its web application's ``/metrics`` instead
    metrics_port: int = 0
    #: Prometheus metrics of each job a worker runs (offload.job_metrics), when
    #: prometheus-client is installed
    job_metrics: bool = True
    #: OpenTelemetry metrics of the jobs submitted and run (offload.otel_metrics; needs
    #: ``offload[otel]``), also on whenever ``tracing`` is
    otel_metrics: bool = False
    #: largest result a task may return, in bytes of JSON; a bigger one fails the job (store
    #: large outputs elsewhere and return a reference)
    max_result_bytes: int = 4 * 1024 * 1024
    #: longest error message kept on a job, in characters (the rest is cut, marked so)
    max_error_chars: int = 8_000
    #: longest progress message kept on a job, in characters (the rest is cut, marked so)
    max_progress_chars: int = 1_000
    #: connections (and requests in progress) the HTTP server holds at once; beyond, new
    #: requests are answered 503 at once (``offload serve``/``up``; uvicorn's limit_concurrency)
    http_max_connections: int = 1_000
    #: seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)
    http_keep_alive: int = 5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigurationError(f"{f.name} must be a finite number, not {value!r}")
        if self.lease_seconds <= 0 or self.renew_interval < 0 or self.reap_interval < 0:
            raise ConfigurationError("lease_seconds must be > 0 and intervals >= 0")
        for name in ("renew_interval", "reap_interval"):
            if getattr(self, name) == 0:
                object.__setattr__(self, name, self.lease_seconds / 3)
        if self.renew_interval >= self.lease_seconds:
            raise ConfigurationError(
                f"renew_interval ({self.renew_interval:g}s) must be shorter than lease_seconds "
                f"({self.lease_seconds:g}s); a third of it is a good choice"
            )
        if not 0 < self.heartbeat_interval <= self.dead_after / 2:
            raise ConfigurationError(
                f"heartbeat_interval ({self.heartbeat_interval:g}s) must be > 0 and at most half "
                f"of dead_after ({self.dead_after:g}s), so one late heartbeat is not a death"
            )
        self._check_worker()
        self._check_limits()

    def _check_worker(self) -> None:
        """The worker's counts: losses before running alone, slots, threads, prefetch."""
        if self.run_alone_after < 1:
            raise ConfigurationError(
                f"run_alone_after ({self.run_alone_after}) must be at least 1 (worker losses)"
            )
        if self.concurrency < 1 or self.loop_threads < 0:
            raise ConfigurationError(
                f"concurrency ({self.concurrency}) must be at least 1 and loop_threads "
                f"({self.loop_threads}) at least 0 (0: as many as the worker's slots)"
            )
        if self.prefetch < -1:
            raise ConfigurationError(
                f"prefetch ({self.prefetch}) must be >= 0 (or -1: sized by the jobs' run time)"
            )
        if self.claim_batch < -1 or self.claim_batch == 0:
            raise ConfigurationError(
                f"claim_batch ({self.claim_batch}) must be at least 1 (or -1: the backend's own)"
            )

    def _check_limits(self) -> None:
        """Retention, pruning, size caps, the metrics port and the log format."""
        ttl = self.result_ttl
        if ttl is not None and (not math.isfinite(ttl) or ttl < 0):
            raise ConfigurationError(f"result_ttl ({ttl:g}) must be >= 0 seconds or None")
        ages = ("retain_succeeded", "retain_failed", "retain_cancelled", "prune_interval")
        if any(getattr(self, name) < 0 for name in ages) or self.max_finished < 0:
            raise ConfigurationError(
                ", ".join(f"{name} ({getattr(self, name):g})" for name in ages)
                + f" must be >= 0 seconds, max_finished ({self.max_finished}) >= 0"
            )
        if self.prune_batch < 1:
            raise ConfigurationError(f"prune_batch ({self.prune_batch}) must be at least 1")
        caps = (
            "max_result_bytes",
            "max_error_chars",
            "max_progress_chars",
            "http_max_connections",
            "http_keep_alive",
        )
        if any(getattr(self, name) < 1 for name in caps):
            raise ConfigurationError(
                ", ".join(f"{name} ({getattr(self, name)})" for name in caps)
                + " must each be at least 1"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError(
                f"metrics_port ({self.metrics_port}) must be a port from 1 to 65535, or 0 (off)"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigurationError("log_format must be 'text' or 'json'")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = "OFFLOAD_"
    ) -> Settings:
        """Defaults overridden by ``OFFLOAD_*`` environment variables."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(prefix + f.name.upper())
            if raw is not None and raw != "":
                default = 0.0 if f.name == "result_ttl" else f.default  # float | None
                values[f.name] = _convert(prefix + f.name.upper(), raw, default)
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (None values are ignored).

        Intervals that were derived from the lease (a third of it) follow a new lease.
        """
        given = {k: v for k, v in changes.items() if v is not None}
        if "lease_seconds" in given:
            for name in ("renew_interval", "reap_interval"):
                if name not in given and getattr(self, name) == self.lease_seconds / 3:
                    given[name] = 0.0
        return replace(self, **given)

    def retention(self, tasks: Mapping[str, Retention] | None = None) -> RetentionPolicy:
        """The retention policy of these settings, with the tasks' own (by task name)."""
        return RetentionPolicy(
            default=Retention(self.retain_succeeded, self.retain_failed, self.retain_cancelled),
            tasks=dict(tasks or {}),
            max_finished=self.max_finished or None,
        )


def _convert(name: str, raw: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        kind = type(default).__name__
        raise ConfigurationError(
            f"environment variable {name}={raw!r} is not a valid {kind}"
        ) from None
    return raw
