"""Overhead of the event-loop watchdog: a hello-world FastAPI endpoint under uvicorn, with and
without ``WatchdogMiddleware``, measured in the same run.

Run from the repository root (see benchmarks/README.md)::

    .venv/bin/python benchmarks/watchdog_bench.py --runs 10 --duration 3

Two uvicorn processes start once (``watchdog_bench:plain_app`` and ``watchdog_bench:watched_app``,
``benchmarks/`` as the working folder, uvloop and httptools as uvicorn picks them). The same
load then hits one and the other in turn, alternating which goes first, ``--runs`` times:
``--connections`` keep-alive HTTP/1.1 connections, each sending its next request as soon as the
previous answer is in, from this process (a small asyncio client on raw streams, far cheaper
per request than the server). With two or more cores the servers are pinned to core 0 and this
client to core 1.

Reported: the medians over the runs of requests per second, p50 and p99 latency, and the
server's CPU time per request (from ``/proc``, which other load on a shared machine disturbs far
less than the rates); the median of the per-run ratios; the CPU each server uses while idle for
20 s (the heartbeat and the monitor thread); and last, the app called directly as ASGI in this
process (no server, no network), with and without the middleware, alternating, timed in CPU
time of the loop thread: what the middleware adds to each request. Blocks the watched server
logs go to a file and are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from offload.integrations.watchdog import WatchdogMiddleware

HERE = Path(__file__).resolve().parent
THRESHOLD_MS = 100
IDLE_SECONDS = 20.0
VARIANTS = ("plain", "watched")


# -- the apps the measured servers load ---------------------------------------------------------
def build_app(*, watched: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/watchdog")
    async def watchdog_state() -> dict[str, bool]:
        """Whether a watchdog monitor thread runs in this server (a check of the setup)."""
        return {"running": any(t.name == "offload-watchdog" for t in threading.enumerate())}

    if watched:
        app.add_middleware(WatchdogMiddleware, threshold_ms=THRESHOLD_MS)
    return app


plain_app = build_app(watched=False)
watched_app = build_app(watched=True)


# -- the load ------------------------------------------------------------------------------------
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    """One measured burst against one server."""

    variant: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float | None  # the server's CPU time (user + system) per request, microseconds


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) a process has used, from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _connection(port: int, deadline: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (start := time.perf_counter()) < deadline:
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            match = LENGTH.search(head)
            if match is None:
                raise RuntimeError(f"no content-length in {head!r}")
            await reader.readexactly(int(match[1]))
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()
        await writer.wait_closed()


async def burst(variant: str, server: Server, connections: int, seconds: float) -> Sample:
    latencies: list[float] = []
    cpu_before = cpu_seconds(server.pid)
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(_connection(server.port, deadline, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - start
    cpu_after = cpu_seconds(server.pid)
    latencies.sort()
    cpu = None
    if cpu_before is not None and cpu_after is not None:
        cpu = (cpu_after - cpu_before) / len(latencies) * 1e6
    return Sample(
        variant,
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        cpu,
    )


# -- the servers ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


@dataclass(frozen=True)
class Server:
    port: int
    pid: int
    log: Path


@contextmanager
def servers(pin: bool, folder: Path) -> Iterator[dict[str, Server]]:
    """Both uvicorn servers, ready, their output in ``folder``; stopped (SIGTERM) at the end."""
    running: dict[str, Server] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for variant in VARIANTS:
            port, log = free_port(), folder / f"{variant}.log"
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "uvicorn",
                            f"watchdog_bench:{variant}_app",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(port),
                            "--log-level",
                            "warning",
                            "--no-access-log",
                            "--lifespan",
                            "on",
                        ],
                        cwd=HERE,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            if pin:
                os.sched_setaffinity(procs[-1].pid, {0})
            running[variant] = Server(port, procs[-1].pid, log)
        for variant, server in running.items():
            _wait_ready(server.port)
            active = b'"running":true' in get(server.port, "/watchdog")
            if active != (variant == "watched"):
                raise RuntimeError(f"the {variant} server has a watchdog running: {active}")
        yield running
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            get(port, "/")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- the report ----------------------------------------------------------------------------------
def table(samples: list[Sample]) -> str:
    rows = [
        "| server | req/s | req/s range | p50 latency | p99 latency | server CPU per request |",
        "|---|---|---|---|---|---|",
    ]
    medians: dict[str, tuple[float, float, float | None]] = {}
    for variant in VARIANTS:
        mine = [s for s in samples if s.variant == variant]
        rps = statistics.median(s.rps for s in mine)
        p50 = statistics.median(s.p50_ms for s in mine)
        p99 = statistics.median(s.p99_ms for s in mine)
        cpus = [s.cpu_us for s in mine if s.cpu_us is not None]
        cpu = statistics.median(cpus) if cpus else None
        medians[variant] = (rps, p50, cpu)
        low, high = min(s.rps for s in mine), max(s.rps for s in mine)
        name = "without the middleware" if variant == "plain" else "with WatchdogMiddleware"
        shown_cpu = f"{cpu:.0f} µs" if cpu is not None else "n/a"
        rows.append(
            f"| {name} | {rps:,.0f} | {low:,.0f} to {high:,.0f} | {p50:.2f} ms | "
            f"{p99:.2f} ms | {shown_cpu} |"
        )
    plain, watched = medians["plain"], medians["watched"]
    overhead = (
        f"Overhead (medians): req/s {(watched[0] - plain[0]) / plain[0]:+.1%}, "
        f"p50 latency {(watched[1] - plain[1]) / plain[1]:+.1%}"
    )
    if plain[2] is not None and watched[2] is not None:
        overhead += f", server CPU per request {(watched[2] - plain[2]) / plain[2]:+.1%}"
    # Each run measures both servers back to back: the median of the per-run ratios cancels
    # the slow drift of a shared machine's load better than the ratio of the medians.
    pairs = list(zip(samples[0::2], samples[1::2], strict=True))
    by_run = [(a, b) if a.variant == "plain" else (b, a) for a, b in pairs]
    paired = f"Per-run pairs (median of watched/plain): req/s {_ratio(by_run, 'rps')}"
    paired += f", p50 latency {_ratio(by_run, 'p50_ms')}"
    if all(a.cpu_us is not None for pair in by_run for a in pair):
        paired += f", server CPU per request {_ratio(by_run, 'cpu_us')}"
    return "\n".join([*rows, "", overhead + ".", paired + "."])


def _ratio(pairs: list[tuple[Sample, Sample]], field: str) -> str:
    ratios = [getattr(watched, field) / getattr(plain, field) for plain, watched in pairs]
    return f"{statistics.median(ratios) - 1:+.1%}"


async def measure(args: argparse.Namespace, running: dict[str, Server]) -> list[Sample]:
    for variant in VARIANTS:  # warm-up, not counted
        await burst(variant, running[variant], args.connections, 1.0)
    samples: list[Sample] = []
    for run in range(args.runs):
        order = VARIANTS if run % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            sample = await burst(variant, running[variant], args.connections, args.duration)
            samples.append(sample)
            cpu = f"{sample.cpu_us:.0f} µs" if sample.cpu_us is not None else "n/a"
            print(
                f"run {run + 1}/{args.runs} {variant:8} {sample.rps:7,.0f} req/s  p50 "
                f"{sample.p50_ms:.2f} ms  p99 {sample.p99_ms:.2f} ms  cpu/req {cpu}"
            )
    return samples


def idle_cpu(running: dict[str, Server], seconds: float) -> dict[str, float] | None:
    """Milliseconds of CPU per second each server uses while it serves nothing."""
    before = {variant: cpu_seconds(server.pid) for variant, server in running.items()}
    time.sleep(seconds)
    after = {variant: cpu_seconds(server.pid) for variant, server in running.items()}
    used: dict[str, float] = {}
    for variant in running:
        start, end = before[variant], after[variant]
        if start is None or end is None:
            return None
        used[variant] = (end - start) / seconds * 1000
    return used


async def in_process(rounds: int, calls: int) -> dict[str, float]:
    """Median microseconds per request of the app called directly as ASGI (no server, no
    network), and (``"added"``) the median of the per-round differences: what the middleware
    itself adds to each request."""
    apps = {
        "plain": build_app(watched=False),
        "watched": WatchdogMiddleware(build_app(watched=False)),
    }
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        pass

    # CPU time of this thread, not wall time: time spent descheduled by other processes on a
    # shared machine does not count. Short rounds, alternating, many of them; medians.
    timings: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_ in range(rounds + 1):
        for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
            app = apps[variant]
            start = time.thread_time()
            for _ in range(calls):
                await app(dict(scope), receive, send)
                await asyncio.sleep(0)  # let the loop run its callbacks, as a server's does
            if round_:  # the first round warms up
                timings[variant].append((time.thread_time() - start) / calls * 1e6)
    watched = apps["watched"]
    assert isinstance(watched, WatchdogMiddleware)
    watched.uninstall()
    medians = {variant: statistics.median(values) for variant, values in timings.items()}
    pairs = zip(timings["plain"], timings["watched"], strict=True)
    return {**medians, "added": statistics.median(w - p for p, w in pairs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="alternating runs (default 10)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per burst")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--asgi-rounds", type=int, default=40, help="in-process ASGI rounds")
    parser.add_argument("--asgi-calls", type=int, default=2_000, help="calls per ASGI round")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    args = parser.parse_args()
    pin = not args.no_pin and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {1})
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    start_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        with servers(pin, Path(folder)) as running:
            samples = runner(measure(args, running))
            idle = idle_cpu(running, IDLE_SECONDS)
        blocks = running["watched"].log.read_text().count("event loop blocked")
    direct = runner(in_process(args.asgi_rounds, args.asgi_calls))
    print()
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, pinned={pin}, load average {start_load:.2f} at the start "
        f"and {os.getloadavg()[0]:.2f} at the end; {args.runs} runs of {args.duration:g} s, "
        f"{args.connections} connections, threshold {THRESHOLD_MS} ms; blocks the watched "
        f"server logged: {blocks}"
    )
    print(table(samples))
    if idle is not None:
        print(
            f"\nIdle servers, CPU over {IDLE_SECONDS:g} s: {idle['plain']:.2f} ms/s without the "
            f"middleware, {idle['watched']:.2f} ms/s with it (the heartbeat and the monitor "
            f"thread: {idle['watched'] - idle['plain']:+.2f} ms of CPU per second)."
        )
    plain, watched, added = direct["plain"], direct["watched"], direct["added"]
    print(
        f"\nIn-process ASGI calls ({args.asgi_rounds} alternating rounds of {args.asgi_calls:,}, "
        f"CPU time of the loop thread): {plain:.1f} µs per request without the middleware, "
        f"{watched:.1f} µs with it; median of the per-round differences {added:+.2f} µs "
        f"({added / plain:+.1%})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
