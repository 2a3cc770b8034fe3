"""Load one endpoint of an example with offload's load generator; report latency and memory.

``offload loadtest URL`` sends offload's own ``POST /v1/jobs``. The examples' endpoints have
paths and bodies of their own, so this script points the same load generator
(``offload.loadtest``: the same clients, the same timing, the same report) at them::

    python examples/bench.py http://127.0.0.1:8000/creators/1/content \\
        --body '{"topic": "oolong"}' -n 500 -c 50 --probe http://127.0.0.1:8000/health

- ``--probe URL``: while the load runs, one more client GETs this URL every 0.1 s and reports
  its latency: does the app still answer its health check?
- ``--watch PID`` (repeatable): samples the resident memory of PID and all its descendants
  every 0.1 s (Linux), e.g. a worker and the commands it runs, and reports the peak.
- ``--drain``: after the load, go on sampling until no watched process has had a child for
  2 s (the work the requests started is done), and report when that was.
- ``--header NAME:VALUE`` (repeatable): sent with every request, e.g. a client id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import httpx

from launcher import tree_rss
from offload import loadtest


def endpoint_target(body: bytes, headers: list[str]) -> Callable[..., Any]:
    """A replacement for offload.loadtest's request: this URL's path, this body and headers."""

    class Endpoint(loadtest._Target):
        def __init__(self, url: str, _job_body: bytes, token: str | None) -> None:
            super().__init__(url, body, token)
            path = urlsplit(url).path or "/"
            head, _, payload = self.request.partition(b"\r\n\r\n")
            _, *fields = head.split(b"\r\n")
            lines = [f"POST {path} HTTP/1.1".encode(), *fields, *(h.encode() for h in headers)]
            self.request = b"\r\n".join(lines) + b"\r\n\r\n" + payload

    return Endpoint


@dataclass
class Samples:
    """Latencies of the probe (ms) and memory of the watched trees (MiB, process counts)."""

    probe_ms: list[float] = field(default_factory=list)
    probe_errors: int = 0
    rss_mib: dict[int, list[float]] = field(default_factory=dict)
    processes: dict[int, list[int]] = field(default_factory=dict)


async def probe(url: str, samples: Samples) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while True:
            began = time.perf_counter()
            try:
                (await client.get(url)).raise_for_status()
                samples.probe_ms.append((time.perf_counter() - began) * 1000)
            except httpx.HTTPError:
                samples.probe_errors += 1
            await asyncio.sleep(0.1)


async def watch(pids: list[int], samples: Samples) -> None:
    while True:
        for pid in pids:
            rss, count = await asyncio.to_thread(tree_rss, pid)
            samples.rss_mib.setdefault(pid, []).append(rss)
            samples.processes.setdefault(pid, []).append(count)
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def sampling(ns: argparse.Namespace, samples: Samples) -> AsyncIterator[None]:
    tasks = []
    if ns.probe:
        tasks.append(asyncio.create_task(probe(ns.probe, samples)))
    if ns.watch:
        tasks.append(asyncio.create_task(watch(ns.watch, samples)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)] if ordered else 0.0


async def drain(pids: list[int], began: float, quiet: float = 2.0, limit: float = 600.0) -> float:
    """Wait until none of ``pids`` has had a child for ``quiet`` seconds; when that began."""
    last_busy = time.perf_counter()
    while time.perf_counter() - last_busy < quiet and time.perf_counter() - began < limit:
        trees = await asyncio.to_thread(lambda: [tree_rss(pid)[1] for pid in pids])
        if any(count > 1 for count in trees):
            last_busy = time.perf_counter()
        await asyncio.sleep(0.1)
    return last_busy - began


async def main(ns: argparse.Namespace) -> dict[str, Any]:
    body = json.dumps(json.loads(ns.body)).encode()
    samples = Samples()
    began = time.perf_counter()
    with mock.patch.object(loadtest, "_Target", endpoint_target(body, ns.header)):
        async with sampling(ns, samples):
            report = await loadtest.run(
                ns.url,
                task="-",
                n=ns.n,
                concurrency=ns.c,
                rate=ns.rate,
                duration=ns.duration,
                progress=loadtest.progress_bar(),
            )
            drained = await drain(ns.watch, began) if ns.drain else None
    result = report.as_dict()
    if drained is not None:
        result["work_done_after_s"] = round(drained, 1)
    if ns.probe:
        result["probe"] = {
            "url": ns.probe,
            "answered": len(samples.probe_ms),
            "errors": samples.probe_errors,
            "p50_ms": round(percentile(samples.probe_ms, 50), 1),
            "max_ms": round(percentile(samples.probe_ms, 100), 1),
        }
    for pid in ns.watch:
        rss = samples.rss_mib.get(pid, [0.0])
        result.setdefault("memory", []).append(
            {
                "pid": pid,
                "rss_first_mib": round(rss[0], 1),
                "rss_peak_mib": round(max(rss), 1),
                "rss_last_mib": round(rss[-1], 1),
                "processes_peak": max(samples.processes.get(pid, [0])),
            }
        )
    return result


def table(result: dict[str, Any]) -> str:
    lat = result["latency_ms"]
    lines = [
        f"target      {result['url']}",
        f"requests    {result['sent']} of {result['requested']} sent, concurrency "
        f"{result['concurrency']}{' (stopped at the time limit)' * result['stopped_early']}",
        f"succeeded   {result['succeeded']}",
        f"failed      {result['failed']} {result['errors'] or ''}",
        f"elapsed     {result['elapsed_s']} s ({result['throughput_rps']} requests/s)",
        f"latency     p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']} ms",
    ]
    if probe_result := result.get("probe"):
        lines.append(
            f"probe       GET {probe_result['url']}: {probe_result['answered']} answered, "
            f"p50 {probe_result['p50_ms']}  max {probe_result['max_ms']} ms, "
            f"{probe_result['errors']} errors"
        )
    if "work_done_after_s" in result:
        lines.append(f"work done   {result['work_done_after_s']} s after the first request")
    for mem in result.get("memory", []):
        lines.append(
            f"memory      pid {mem['pid']} and descendants: RSS {mem['rss_first_mib']} MiB at "
            f"start, peak {mem['rss_peak_mib']}, end {mem['rss_last_mib']}; "
            f"at most {mem['processes_peak']} processes"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the endpoint to POST to, e.g. http://127.0.0.1:8000/roles")
    parser.add_argument("--body", default="{}", help="the JSON body of every request")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    parser.add_argument("-n", type=int, default=500, help="requests (500)")
    parser.add_argument("-c", type=int, default=50, help="clients (50)")
    parser.add_argument("--rate", type=float, help="requests/s in all (default: closed loop)")
    parser.add_argument("--duration", type=float, default=60.0, help="stop sending after (60 s)")
    parser.add_argument("--probe", help="GET this URL every 0.1 s during the load")
    parser.add_argument("--watch", type=int, action="append", default=[], metavar="PID")
    parser.add_argument("--drain", action="store_true", help="sample until the work is done")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse()
    outcome = asyncio.run(main(options))
    print(json.dumps(outcome, indent=2) if options.json else table(outcome))
