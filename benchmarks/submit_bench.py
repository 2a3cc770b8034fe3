"""Benchmark of the submit path (issue 22 items 1 and 4): what an endpoint's submit costs.

Run from the repository root::

    .venv/bin/python benchmarks/submit_bench.py --redis redis://127.0.0.1:6379/15 \\
        --huey-python /path/to/venv-with-huey/bin/python --out docs/benchmarks.md

For each backend (Redis, SQLite): one-at-a-time ``task.submit`` (sync, through the portal),
one-at-a-time ``await task.asubmit`` and bulk ``asubmit_many`` (chunks of ``--chunk``), each
with no worker and with one worker process draining meanwhile. A rate is submits per second of
wall time; client CPU per submit is ``time.process_time`` of this process over the submits.
With ``--huey-python``, Huey's one-at-a-time enqueue (``noop()`` on a ``RedisHuey``) is measured
on the same Redis in the same run, from that interpreter, with no consumer and with one
``huey_consumer`` (one worker thread) draining meanwhile. Redis's own time per submit script is
read from ``INFO commandstats`` (evalsha usec_per_call) around the no-worker runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import redis
from backend_bench import build_app, running_worker, task_of
from benchreport import command_line, write_section

import offload

HEADING = "Submit path (issue 22 items 1 and 4)"
HUEY_APP = """
import os
from huey import RedisHuey
h = RedisHuey("submitbench-" + os.environ["HB_NAME"], url=os.environ["HB_URL"], results=False)
@h.task(name="noop")
def noop(): pass
"""
HUEY_SCRIPT = """
import sys, time
from hueybench_app import h, noop
n = int(sys.argv[1])
noop()
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(n): noop()
t, c = time.perf_counter() - t0, time.process_time() - c0
print(n / t, c / n * 1000)
h.storage.flush_all()
"""

Row = tuple[str, str, str, float, float]  # backend, mode, worker, jobs/s, client CPU ms


def one_at_a_time_sync(app: offload.App, n: int) -> tuple[float, float]:
    task = task_of(app, "noop")
    task.submit()  # the portal and the connection are up before the clock starts
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        task.submit()
    return _rates(n, t0, c0)


async def one_at_a_time_async(app: offload.App, n: int) -> tuple[float, float]:
    task = task_of(app, "noop")
    await task.asubmit()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        await task.asubmit()
    return _rates(n, t0, c0)


async def bulk(app: offload.App, n: int, chunk: int) -> tuple[float, float]:
    await app.asubmit_many([app.prepare("noop")])
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, n, chunk):
        await app.asubmit_many([app.prepare("noop") for _ in range(min(chunk, n - start))])
    return _rates(n, t0, c0)


def _rates(n: int, t0: float, c0: float) -> tuple[float, float]:
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n / wall, cpu / n * 1000


def _evalsha(url: str) -> tuple[int, int]:
    stats = redis.Redis.from_url(url).info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


async def measure(
    backend: str, url: str, mode: str, worker: bool, n: int, chunk: int, log: Path
) -> Row:
    """One measurement on a fresh namespace (Redis) or database file (SQLite)."""
    app = build_app(url)
    async with AsyncExitStack() as stack:
        if worker:
            await stack.enter_async_context(running_worker(url, log, None))
        if mode == "sync":  # the portal's loop owns the backend: run off this loop
            rate, cpu = await asyncio.to_thread(one_at_a_time_sync, app, n)
            await asyncio.to_thread(app.close)
        else:
            run: Callable[[], Awaitable[tuple[float, float]]]
            run = (
                (lambda: one_at_a_time_async(app, n))
                if mode == "async"
                else (lambda: bulk(app, n, chunk))
            )
            rate, cpu = await run()
            await app.aclose()
    return backend, mode, "1 worker" if worker else "none", rate, cpu


def huey_rate(python: str, url: str, n: int, consumer: bool) -> tuple[float, float]:
    """Huey's one-at-a-time enqueue rate and client CPU, with one consumer draining or none."""
    folder = Path(tempfile.mkdtemp(prefix="submit-bench-huey-"))
    (folder / "hueybench_app.py").write_text(HUEY_APP)
    env = {**os.environ, "HB_NAME": uuid.uuid4().hex[:8], "HB_URL": url, "PYTHONPATH": str(folder)}
    drain = None
    if consumer:  # one worker thread, polling at most every 10 ms
        argv = [python, "-m", "huey.bin.huey_consumer", "hueybench_app.h", "-w", "1", "-m", "0.01"]
        drain = subprocess.Popen(argv, cwd=folder, env=env, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # started and polling
    try:
        out = subprocess.run(
            [python, "-c", HUEY_SCRIPT, str(n)],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        if drain is not None:
            drain.terminate()
            drain.wait(30)
    rate, cpu = out.stdout.split()
    return float(rate), float(cpu)


def _redis_url(base: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}prefix=sb{uuid.uuid4().hex[:8]}"


def _drop_namespace(base: str, url: str) -> None:
    prefix = url.rsplit("prefix=", 1)[1]
    with redis.Redis.from_url(base) as client:  # the root is "{prefix}:" (a hash tag)
        keys = list(client.scan_iter(match="{" + prefix + "}*", count=5000))
        for start in range(0, len(keys), 5000):
            client.unlink(*keys[start : start + 5000])


async def run_all(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    tmp = Path(tempfile.mkdtemp(prefix="submit-bench-"))
    plan = [(b, m, w) for b in args.backends for w in (False, True) for m in args.modes]
    for backend, mode, worker in plan:
        n = args.bulk_jobs if mode == "bulk" else args.jobs
        samples: list[Row] = []
        for run in range(args.runs):
            if backend == "redis":
                url = _redis_url(args.redis)
                before = _evalsha(args.redis)
            else:
                url = f"sqlite:///{tmp}/{uuid.uuid4().hex}.db"
            row = await measure(backend, url, mode, worker, n, args.chunk, tmp / "worker.log")
            if backend == "redis":
                calls, usec = (a - b for a, b in zip(_evalsha(args.redis), before, strict=True))
                _drop_namespace(args.redis, url)
                if not worker and calls:
                    print(f"  redis evalsha: {usec / calls:.1f} us/call over {calls} calls")
            print(
                f"{row[0]:6} {row[1]:5} worker={row[2]:8} {row[3]:9.0f} jobs/s "
                f"{row[4]:.3f} ms CPU/submit (run {run + 1})",
                flush=True,
            )
            samples.append(row)
        rows.append(_median(samples))
    for consumer in (False, True) if args.huey_python else ():
        worker = "1 consumer" if consumer else "none"
        for _ in range(args.runs):
            rate, cpu = huey_rate(args.huey_python, args.redis, args.jobs, consumer)
            print(f"huey   sync  worker={worker:8} {rate:9.0f} jobs/s {cpu:.3f} ms CPU/submit")
            rows.append(("redis (Huey 3.5)", "sync", worker, rate, cpu))
        rows[-args.runs :] = [_median(rows[-args.runs :])]
    return rows


def _median(samples: list[Row]) -> Row:
    b, m, w = samples[0][:3]
    return (
        b,
        m,
        w,
        statistics.median(s[3] for s in samples),
        statistics.median(s[4] for s in samples),
    )


def table(rows: list[Row], args: argparse.Namespace) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {HEADING}",
        "",
        f"Measured {when}, median of {args.runs} run(s), {args.jobs:,} one-at-a-time submits "
        f"or {args.bulk_jobs:,} bulk ones in chunks of {args.chunk:,}; the machine's 2 cores "
        "were shared with other work, so rates compare within this run only.",
        "",
        f"```sh\n{command_line()}\n```",
        "",
        "| backend | submit | worker draining | jobs/s | client CPU per submit, ms |",
        "|---|---|---|---:|---:|",
    ]
    for backend, mode, worker, rate, cpu in rows:
        lines.append(f"| {backend} | {mode} | {worker} | {rate:,.0f} | {cpu:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    p.add_argument("--backends", type=lambda s: s.split(","), default=["redis", "sqlite"])
    p.add_argument("--modes", type=lambda s: s.split(","), default=["sync", "async", "bulk"])
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--bulk-jobs", type=int, default=100_000)
    p.add_argument("--chunk", type=int, default=1000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--huey-python", help="an interpreter with huey installed")
    p.add_argument("--out", type=Path, help="write the table into this Markdown file")
    args = p.parse_args(argv)
    rows = asyncio.run(run_all(args))
    text = table(rows, args)
    print(text)
    if args.out:
        write_section(args.out, HEADING, text)


if __name__ == "__main__":
    main()
