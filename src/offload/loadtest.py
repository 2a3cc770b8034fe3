"""``offload loadtest``: submit many jobs to an offload API at once and report the latency.

:func:`run` fires ``n`` ``POST /v1/jobs`` requests, ``concurrency`` at a time, and stops early
once ``duration`` seconds have passed (requests in flight then finish or time out). Load tests
target loopback only, unless ``allow_remote`` says otherwise: pointing one at a shared service
by accident is a small denial of service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from offload.errors import ConfigurationError

#: ``progress(done, total)``: called after each request
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Report:
    """What a load test measured. Latencies are in milliseconds."""

    url: str
    requested: int
    concurrency: int
    sent: int
    succeeded: int
    errors: dict[str, int]
    elapsed: float
    stopped_early: bool
    latencies_ms: list[float] = field(repr=False)

    @property
    def throughput(self) -> float:
        """Requests answered per second."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile latency (nearest rank), 0.0 with no requests."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "requested": self.requested, "concurrency": self.concurrency,
            "sent": self.sent, "succeeded": self.succeeded, "failed": self.sent - self.succeeded,
            "errors": dict(sorted(self.errors.items())), "elapsed_s": round(self.elapsed, 3),
            "stopped_early": self.stopped_early, "throughput_rps": round(self.throughput, 1),
            "latency_ms": {
                "p50": round(self.percentile(50), 2), "p95": round(self.percentile(95), 2),
                "p99": round(self.percentile(99), 2), "max": round(self.percentile(100), 2),
            },
        }  # fmt: skip

    def table(self) -> str:
        d = self.as_dict()
        lat = d["latency_ms"]
        rows = [
            ("target", self.url),
            ("requests", f"{self.sent} of {self.requested} sent, concurrency {self.concurrency}"
                         + (" (stopped at the time limit)" if self.stopped_early else "")),
            ("succeeded", str(self.succeeded)),
            ("failed", str(d["failed"])),
            *((f"  {status}", str(count)) for status, count in d["errors"].items()),
            ("elapsed", f"{self.elapsed:.2f} s"),
            ("throughput", f"{self.throughput:.1f} requests/s"),
            ("latency", f"p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
                        f"max {lat['max']:.1f} ms"),
        ]  # fmt: skip
        return "\n".join(f"{key:<11} {value}" for key, value in rows)


def check_target(url: str, *, allow_remote: bool) -> None:
    """Refuse a non-loopback target unless ``allow_remote``. :raises ConfigurationError:"""
    host = httpx.URL(url).host
    if not host:
        raise ConfigurationError(f"{url!r} is not an http(s) URL with a host")
    if allow_remote or host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigurationError(
            f"refusing to load-test {host}: load tests target loopback addresses only "
            "(127.0.0.1, ::1, localhost); pass --allow-remote if this service is yours to load"
        )


async def run(
    url: str,
    *,
    task: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    n: int = 1000,
    concurrency: int = 50,
    duration: float = 60.0,
    token: str | None = None,
    allow_remote: bool = False,
    timeout: float = 10.0,
    progress: Progress | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Report:
    """Submit ``n`` jobs of ``task`` to ``url`` (``concurrency`` at a time, ``duration`` s at
    most) and report. Every answer counts; errors are tallied by status (or exception name).
    """
    check_target(url, allow_remote=allow_remote)
    if n < 1 or concurrency < 1 or duration <= 0:
        raise ConfigurationError("n and concurrency must be at least 1, duration above 0")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"task": task, "args": args or [], "kwargs": kwargs or {}}
    endpoint = url.rstrip("/") + "/v1/jobs"
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    deadline = started + duration
    remaining = n

    async def one(client: httpx.AsyncClient) -> None:
        begin = time.perf_counter()
        try:
            response = await client.post(endpoint, json=body, headers=headers)
            if not response.is_success:
                errors[str(response.status_code)] += 1
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
        latencies.append((time.perf_counter() - begin) * 1000)
        if progress is not None:
            progress(len(latencies), n)

    async def lane(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            await one(client)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(transport=transport, timeout=timeout, limits=limits)
    async with client, asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, n)):
            group.create_task(lane(client))
    sent = len(latencies)
    return Report(
        url=url, requested=n, concurrency=concurrency, sent=sent,
        succeeded=sent - sum(errors.values()), errors=dict(errors),
        elapsed=time.perf_counter() - started, stopped_early=sent < n, latencies_ms=latencies,
    )  # fmt: skip


def progress_bar() -> Progress | None:
    """A progress bar on stderr when it is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    last = [-1]

    def draw(done: int, total: int) -> None:
        percent = done * 100 // total
        if percent == last[0] and done != total:
            return
        last[0] = percent
        bar = "#" * (percent * 30 // 100)
        end = "\r" + " " * 60 + "\r" if done == total else ""
        sys.stderr.write(f"\r[{bar:<30}] {done}/{total}{end}")
        sys.stderr.flush()

    return draw
