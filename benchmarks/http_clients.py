"""Submitting through offload's HTTP clients, beside a raw aiohttp client, to one ``offload up``.

Run from the repository root::

    .venv/bin/python benchmarks/http_clients.py --runs 3 --out docs/benchmarks.md
    .venv/bin/python benchmarks/http_clients.py --runs 3 \
        --backend 'redis://127.0.0.1:6379/14?prefix={run}' --out docs/benchmarks.md

Each run starts a fresh ``offload up`` (API, dashboard and embedded worker in one process) on a
free loopback port: a new SQLite file, or ``--backend`` with ``{run}`` made unique. Against it,
at each concurrency (50 and 200 submitters), three clients take turns submitting
``send_email`` jobs back to back for ``--seconds``:

- ``aiohttp``: a raw ``aiohttp.ClientSession`` posting the JSON body (the reference);
- ``AsyncHTTPClient``: ``offload.AsyncHTTPClient.submit`` from that many asyncio tasks;
- ``HTTPClient``: one ``offload.HTTPClient`` shared by that many threads.

Reported: jobs/s (answered submissions over the measured seconds) and the p50 and p99 of each
submission's latency. The target (issue 22, item 5): each offload client within 1.3x of raw
aiohttp, i.e. jobs/s >= aiohttp / 1.3 and p99 <= 1.3 x aiohttp's, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from benchreport import command_line, write_section
from http_bench import (
    Server,
    _spawn,
    drop_redis_namespace,
    free_port,
    machine,
    stop,
    until_ready,
)

import offload

SECTION = "HTTP clients: offload's against raw aiohttp"
CLIENTS = ("aiohttp", "AsyncHTTPClient", "HTTPClient")
#: the same two clients as if aiohttp were not installed (httpx alone: the fallback)
HTTPX_ONLY = ("AsyncHTTPClient/httpx", "HTTPClient/httpx")
ALL = CLIENTS + HTTPX_ONLY
RATIO = 1.3
BODY = {"task": "send_email", "args": ["bench@example.com", "hi"], "kwargs": {}}
WARMUP = 200

Sample = tuple[float, float, float, float]  # jobs/s, p50 ms, p99 ms, client CPU ms per job
Results = dict[tuple[int, str], list[Sample]]


def start_up(backend: str, folder: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "offload", "up", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "OFFLOAD_BACKEND": backend}
    proc, log = _spawn(argv, folder, "up", env)
    return Server("up", [proc], f"http://127.0.0.1:{port}", [log], backend)


def summary(latencies: list[float], seconds: float) -> tuple[float, float, float]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    return len(ordered) / seconds, pct(50), pct(99)


# -- the three clients -------------------------------------------------------------------------
async def closed_loop(
    send: Callable[[], Awaitable[object]], concurrency: int, seconds: float
) -> tuple[float, float, float]:
    """``concurrency`` tasks calling ``send`` back to back for ``seconds``; after a warm-up."""
    await asyncio.gather(*(send() for _ in range(min(WARMUP, concurrency))))
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def one() -> None:
        while (started := time.perf_counter()) < end:
            await send()
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return summary(latencies, time.perf_counter() - began)


async def raw_aiohttp(base: str, concurrency: int, seconds: float) -> tuple[float, float, float]:
    body = orjson.dumps(BODY)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def send() -> object:
            async with session.post(f"{base}/v1/jobs", data=body, headers=headers) as r:
                assert r.status < 300, await r.text()
                return await r.json()

        return await closed_loop(send, concurrency, seconds)


@contextlib.contextmanager
def wire(client: str) -> Iterator[None]:
    """For the ``/httpx`` clients: make offload's aiohttp module unimportable meanwhile."""
    if not client.endswith("/httpx"):
        yield
        return
    saved = sys.modules.pop("offload.http_client.aiohttp_", None)
    sys.modules["offload.http_client.aiohttp_"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        del sys.modules["offload.http_client.aiohttp_"]
        if saved is not None:
            sys.modules["offload.http_client.aiohttp_"] = saved


async def offload_async(
    base: str, concurrency: int, seconds: float, name: str
) -> tuple[float, float, float]:
    with wire(name):
        made = offload.AsyncHTTPClient(base)
    async with made as client:

        async def send() -> object:
            return await client.submit(BODY["task"], *BODY["args"])

        return await closed_loop(send, concurrency, seconds)


def offload_sync(
    base: str, concurrency: int, seconds: float, name: str
) -> tuple[float, float, float]:
    """One shared ``HTTPClient``, ``concurrency`` threads sending back to back."""
    latencies: list[float] = []
    with wire(name):
        made = offload.HTTPClient(base)
    with made as client:
        barrier = threading.Barrier(concurrency + 1)
        end = [0.0]

        def one() -> None:
            client.submit(BODY["task"], *BODY["args"])  # warm-up: one connection each
            barrier.wait()
            mine = []
            while (started := time.perf_counter()) < end[0]:
                client.submit(BODY["task"], *BODY["args"])
                mine.append(time.perf_counter() - started)
            latencies.extend(mine)

        threads = [threading.Thread(target=one) for _ in range(concurrency)]
        for t in threads:
            t.start()
        end[0] = time.perf_counter() + seconds + 60  # until every thread is past the barrier
        barrier.wait()
        began = time.perf_counter()
        end[0] = began + seconds
        for t in threads:
            t.join()
    return summary(latencies, time.perf_counter() - began)


async def measure(client: str, base: str, concurrency: int, seconds: float) -> Sample:
    """One client's sample, with the CPU this process spent per job (warm-up included)."""
    cpu = time.process_time()
    if client == "aiohttp":
        jobs = await raw_aiohttp(base, concurrency, seconds)
    elif client.startswith("AsyncHTTPClient"):
        jobs = await offload_async(base, concurrency, seconds, client)
    else:
        jobs = await asyncio.to_thread(offload_sync, base, concurrency, seconds, client)
    warm = concurrency if client.startswith("HTTPClient") else min(WARMUP, concurrency)
    done = jobs[0] * seconds + warm
    return (*jobs, 1000 * (time.process_time() - cpu) / done)


# -- runs --------------------------------------------------------------------------------------
async def one_run(ns: argparse.Namespace, run: int, results: Results) -> None:
    with tempfile.TemporaryDirectory(prefix="offload-http-clients-") as tmp:
        folder = Path(tmp)
        backend = (
            f"sqlite:///{folder / 'offload.db'}"
            if ns.backend is None
            else ns.backend.replace("{run}", f"bench{run}{time.time_ns() % 10**9}")
        )
        server = start_up(backend, folder)
        try:
            await until_ready(server)
            for concurrency in ns.concurrency:
                chosen = [c for c in ALL if c in ns.clients]
                order = chosen[run % len(chosen) :] + chosen[: run % len(chosen)]  # rotated
                for client in order:
                    sample = await measure(client, server.base, concurrency, ns.seconds)
                    results.setdefault((concurrency, client), []).append(sample)
                    progress(
                        f"run {run + 1} x{concurrency:<4} {client:16} {sample[0]:7.0f} jobs/s  "
                        f"p50 {sample[1]:6.1f} ms  p99 {sample[2]:6.1f} ms  "
                        f"CPU {sample[3]:.2f} ms/job"
                    )
        finally:
            stop(server)
            if backend.startswith("redis"):
                await drop_redis_namespace(backend)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- reporting ---------------------------------------------------------------------------------
def med(samples: list[Sample], i: int) -> float:
    return statistics.median(s[i] for s in samples)


def cell(samples: list[Sample], i: int) -> str:
    values = [s[i] for s in samples]
    f = "{:,.0f}" if i == 0 else "{:.2f}" if i == 3 else "{:.1f}"
    mid = f.format(statistics.median(values))
    if len(values) == 1:
        return mid
    return f"{mid} ({f.format(min(values))} to {f.format(max(values))})"


def table(results: Results) -> str:
    rows = [
        "| submitters | client | jobs/s | p50 ms | p99 ms | client CPU ms/job |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for (concurrency, client), samples in sorted(
        results.items(), key=lambda i: (i[0][0], ALL.index(i[0][1]))
    ):
        rows.append(
            f"| {concurrency} | {client} | {cell(samples, 0)} | {cell(samples, 1)} | "
            f"{cell(samples, 2)} | {cell(samples, 3)} |"
        )
    return "\n".join(rows)


def verdicts(results: Results) -> list[str]:
    lines = []
    for concurrency in sorted({c for c, _ in results}):
        ref = results.get((concurrency, "aiohttp"))
        for client in CLIENTS[1:] + HTTPX_ONLY:
            mine = results.get((concurrency, client))
            if ref is None or mine is None:
                continue
            speed = med(ref, 0) / med(mine, 0)
            tail = med(mine, 2) / med(ref, 2)
            met = speed <= RATIO and tail <= RATIO
            lines.append(
                f"- {client}, {concurrency} submitters: aiohttp's jobs/s are {speed:.2f}x its own, "
                f"its p99 {tail:.2f}x aiohttp's (target: both <= {RATIO}): "
                f"**{'met' if met else 'missed'}**"
            )
    return lines


def section(ns: argparse.Namespace, results: Results, duration: str) -> str:
    backend = (
        f"`{ns.backend}`, `{{run}}` made unique per run"
        if ns.backend
        else "a fresh SQLite file per run"
    )
    kind = "Redis" if ns.backend and ns.backend.startswith("redis") else "SQLite"
    return "\n".join(
        [
            f"## {SECTION} ({kind})",
            "",
            f"Measured with `benchmarks/http_clients.py` on {datetime.now(UTC):%Y-%m-%d} in "
            f"{duration}: `offload up` on {backend}; each client submits `send_email` jobs back "
            f"to back for {ns.seconds:g} s per concurrency (after a warm-up), the clients taking "
            "turns within each run. `aiohttp` is a raw `aiohttp.ClientSession` posting the body; "
            "`AsyncHTTPClient` runs in asyncio tasks, `HTTPClient` is one client shared by that "
            "many threads; `/httpx` marks the same client as if aiohttp were not installed (httpx "
            "alone, the fallback). The client runs in the benchmark's own process, beside the "
            "server on the same cores.",
            "",
            *machine(),
            "",
            "Command:",
            "",
            "```",
            command_line(),
            "```",
            "",
            f"Median of {len(next(iter(results.values())))} run(s); min to max in brackets.",
            "",
            table(results),
            "",
            "Targets (issue 22, item 5: within 1.3x of raw aiohttp's throughput and p99):",
            "",
            *verdicts(results),
            "",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--backend", help="default: a fresh SQLite file per run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0, help="measured seconds per client (4)")
    p.add_argument("--concurrency", default="50,200", help="submitters, comma-separated")
    p.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help=f"comma-separated, from {', '.join(ALL)}; default: first 3",
    )
    p.add_argument("--out", type=Path, help="write the results section into this Markdown file")
    ns = p.parse_args(argv)
    ns.concurrency = [int(c) for c in ns.concurrency.split(",")]
    ns.clients = ns.clients.split(",")
    return ns


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    started = time.monotonic()
    results: Results = {}
    for run in range(ns.runs):
        asyncio.run(one_run(ns, run, results))
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    print(table(results))
    print("\n".join(verdicts(results)))
    if ns.out is not None:
        write_section(
            ns.out,
            f"{SECTION} ({'Redis' if ns.backend else 'SQLite'})",
            section(ns, results, f"{minutes}m{seconds:02d}s"),
        )
        print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
