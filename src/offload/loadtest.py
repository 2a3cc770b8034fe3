"""``offload loadtest``: submit many jobs to an offload API at once and report the latency.

:func:`run` fires ``n`` ``POST /v1/jobs`` requests from ``concurrency`` clients, as fast as the
answers come or at a steady ``rate``, and stops early once ``duration`` seconds have passed
(requests in flight then finish or time out). Load tests target loopback only, unless
``allow_remote`` says otherwise: pointing one at a shared service by accident is a small denial
of service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from offload.errors import ConfigurationError

#: ``progress(done, total)``: called after each request
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Report:
    """What a load test measured. Latencies are in milliseconds."""

    url: str
    requested: int
    concurrency: int
    rate: float | None  # requests per second asked for; None: as fast as answers came
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
            "url": self.url,
            "requested": self.requested,
            "concurrency": self.concurrency,
            "rate_rps": self.rate,
            "sent": self.sent,
            "succeeded": self.succeeded,
            "failed": self.sent - self.succeeded,
            "errors": dict(sorted(self.errors.items())),
            "elapsed_s": round(self.elapsed, 3),
            "stopped_early": self.stopped_early,
            "throughput_rps": round(self.throughput, 1),
            "latency_ms": {
                "p50": round(self.percentile(50), 2),
                "p95": round(self.percentile(95), 2),
                "p99": round(self.percentile(99), 2),
                "max": round(self.percentile(100), 2),
            },
        }

    def table(self) -> str:
        d = self.as_dict()
        lat = d["latency_ms"]
        rows = [
            ("target", self.url),
            (
                "requests",
                f"{self.sent} of {self.requested} sent, concurrency {self.concurrency}"
                + ("" if self.rate is None else f", at {self.rate:g}/s")
                + (" (stopped at the time limit)" if self.stopped_early else ""),
            ),
            ("succeeded", str(self.succeeded)),
            ("failed", str(d["failed"])),
            *((f"  {status}", str(count)) for status, count in d["errors"].items()),
            ("elapsed", f"{self.elapsed:.2f} s"),
            ("throughput", f"{self.throughput:.1f} requests/s"),
            (
                "latency",
                f"p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
                f"max {lat['max']:.1f} ms",
            ),
        ]
        return "\n".join(f"{key:<11} {value}" for key, value in rows)


def check_target(url: str, *, allow_remote: bool) -> None:
    """Refuse a non-loopback target unless ``allow_remote``. :raises ConfigurationError:"""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
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
    rate: float | None = None,
    duration: float = 60.0,
    token: str | None = None,
    allow_remote: bool = False,
    timeout: float = 10.0,
    progress: Progress | None = None,
) -> Report:
    """Submit ``n`` jobs of ``task`` to ``url`` from ``concurrency`` clients (``duration`` s at
    most) and report. Every answer counts; errors are tallied by status (or exception name).

    Each client has one keep-alive connection of its own, as that many separate callers would.
    Without ``rate`` each client sends its next request as soon as the last one is answered (a
    closed loop: it finds the service's capacity, and the latency is then mostly time spent
    queued, about ``concurrency / throughput``). With ``rate`` (requests per second in all),
    request *i* is due ``i / rate`` seconds after the start and goes out on the next free
    client; a request that waited for a free client counts its latency from when it was due, so
    a stalled service cannot hide the requests it held up.

    The clients speak just enough HTTP/1.1 for this one request, so that the load generator
    costs a small fraction of what the service under test does (a full client such as httpx
    costs more per request than the API's submit, and would share the machine's CPU with it).
    """
    check_target(url, allow_remote=allow_remote)
    if n < 1 or concurrency < 1 or duration <= 0 or (rate is not None and rate <= 0):
        raise ConfigurationError("n and concurrency must be at least 1, duration and rate above 0")
    body = orjson.dumps({"task": task, "args": args or [], "kwargs": kwargs or {}})
    tally = _Tally(n, timeout, progress)
    conns = [_Connection(_Target(url, body, token)) for _ in range(min(concurrency, n))]
    try:
        # Connect first, so that the clock does not count it (failures show up as errors later)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(c.connect() for c in conns), return_exceptions=True)
        started = time.perf_counter()
        schedule = _Schedule(n, rate, started, started + duration)
        async with asyncio.TaskGroup() as group:
            for conn in conns:
                group.create_task(tally.lane(conn, schedule))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(conn.aclose() for conn in conns))
    return tally.report(url, concurrency, rate, elapsed)


class _Tally:
    """The requests of one load test as they are answered: each one's latency, and the errors
    counted by status (or exception name); ``progress`` hears of each."""

    def __init__(self, n: int, timeout: float, progress: Progress | None) -> None:
        self.n, self.timeout, self.progress = n, timeout, progress
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()

    def report(self, url: str, concurrency: int, rate: float | None, elapsed: float) -> Report:
        sent = len(self.latencies)
        return Report(
            url=url,
            requested=self.n,
            concurrency=concurrency,
            rate=rate,
            sent=sent,
            succeeded=sent - sum(self.errors.values()),
            errors=dict(self.errors),
            elapsed=elapsed,
            stopped_early=sent < self.n,
            latencies_ms=self.latencies,
        )

    async def lane(self, conn: _Connection, due_times: _Schedule) -> None:
        """One client: send each request it is given when it is due, one at a time."""
        while (due := due_times.next()) is not None:
            now = time.perf_counter()
            if due > now:  # early: wait, and time the request from when it really goes out
                await asyncio.sleep(due - now)
                due = time.perf_counter()
            await self.one(conn, due)

    async def one(self, conn: _Connection, begin: float) -> None:
        """Send one request on ``conn``; its latency counts from ``begin``."""
        try:
            async with asyncio.timeout(self.timeout):
                status = await conn.post()
            if not 200 <= status < 300:
                self.errors[str(status)] += 1
        except (OSError, EOFError, ValueError, IndexError, asyncio.LimitOverrunError) as exc:
            conn.close()  # its state is unknown: the next request starts a new one
            self.errors[type(exc).__name__] += 1
        self.latencies.append((time.perf_counter() - begin) * 1000)
        if self.progress is not None:
            self.progress(len(self.latencies), self.n)


class _Schedule:
    """When each request is due: at once (closed loop), or the ``i``-th at ``i / rate``."""

    def __init__(self, n: int, rate: float | None, started: float, deadline: float) -> None:
        self.left, self.rate, self.started, self.deadline = n, rate, started, deadline
        self.issued = 0

    def next(self) -> float | None:
        """The next request's due time (``time.perf_counter()``), or None: no more requests."""
        due = time.perf_counter() if self.rate is None else self.started + self.issued / self.rate
        if self.left <= 0 or due >= self.deadline or time.perf_counter() >= self.deadline:
            return None
        self.left -= 1
        self.issued += 1
        return due


class _Target:
    """Where the requests go, and the bytes of the one request that is sent again and again."""

    def __init__(self, url: str, body: bytes, token: str | None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.tls else 80)
        authority = f"[{self.host}]" if ":" in self.host else self.host
        if parts.port is not None:
            authority += f":{parts.port}"
        head = [
            f"POST {parts.path.rstrip('/')}/v1/jobs HTTP/1.1",
            f"Host: {authority}",
            "User-Agent: offload-loadtest",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        if token:
            head.append(f"Authorization: Bearer {token}")
        self.request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends the target's request and reads answers.

    Answers may be sized by ``Content-Length``, chunked, or end with the connection; a
    connection the server closes (or that failed) is opened again by the next request.
    """

    def __init__(self, target: _Target) -> None:
        self.target = target
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is not None and self._streams[0].at_eof():
            self.close()  # the server closed it while it was idle (keep-alive timeout)
        if self._streams is None:
            t = self.target
            self._streams = await asyncio.open_connection(t.host, t.port, ssl=t.tls)
        return self._streams

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

    async def aclose(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def post(self) -> int:
        """Send the request once and read the whole answer; return its status code."""
        reused = self._streams is not None
        try:
            reader, head = await self._send()
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            # The server closed the idle connection as the request went out, and answered
            # nothing: send it again on a new one.
            self.close()
            reader, head = await self._send()
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif "chunked" in headers.get("transfer-encoding", ""):
            await _skip_chunks(reader)
        else:  # the body ends with the connection
            await reader.read()
            headers["connection"] = "close"
        if headers.get("connection") == "close":
            self.close()
        return status

    async def _send(self) -> tuple[asyncio.StreamReader, bytes]:
        """Send the request; return the reader and the answer's head (status line, headers)."""
        reader, writer = await self.connect()
        writer.write(self.target.request)
        return reader, await reader.readuntil(b"\r\n\r\n")


async def _skip_chunks(reader: asyncio.StreamReader) -> None:
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        await reader.readexactly(size + 2)  # the chunk and its CRLF
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass  # trailers, up to the empty line


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
