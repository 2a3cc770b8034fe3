"""What listing costs with many finished jobs on Redis: list_jobs pages, timed.

    .venv/bin/python benchmarks/list_cost.py [-n 100000] [--repeat 5] [--one-time]
        [--redis-url redis://127.0.0.1:6379/14]

Submits N jobs to a private namespace and drains them as a worker does (claims of 200, each
job completed; every 100th job is of task "rare" and fails), then times, median of --repeat
runs: the first page (50 jobs) unfiltered, filtered by status=failed, by task=rare, by
status=succeeded and queue=default, and the 20th page unfiltered (following cursors); for
each, the median and longest LIST script call (timed at the client: an upper bound of how
long one blocked the server) and the calls the server's slow log holds (over 10 ms by
default). Uses only the Backend API (and wraps its ``_script``), so the same script times
an older tree (PYTHONPATH=<its src>).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

import redis

from offload.backends.redis import RedisBackend
from offload.core.ids import new_job_id, new_worker_id
from offload.core.job import JobFilter, Lease, NewJob
from offload.core.states import State

BATCH = 200


async def fill(backend: Any, n: int, batch: int = BATCH) -> None:
    for start in range(0, n, batch):
        jobs = [
            NewJob(id=new_job_id(), task="rare" if i % 100 == 0 else "noop", args=[], kwargs={})
            for i in range(start, min(n, start + batch))
        ]
        await backend.submit(jobs)
    worker, done = new_worker_id("worker"), 0
    while done < n:
        claimed = await backend.claim(worker, {"default": BATCH}, BATCH, 60.0)
        if not claimed:
            raise RuntimeError(f"nothing to claim after {done} of {n} jobs")
        ends = []
        for j in claimed:
            lease = Lease(j.id, j.token)
            if j.task == "rare":
                ends.append(backend.fail(lease, {"type": "E", "message": "no"}))
            else:
                ends.append(backend.complete(lease, None))
        await asyncio.gather(*ends)
        done += len(claimed)


class Longest:
    """Wraps a backend's ``_script``: the LIST calls' times since the last reset, in ms."""

    def __init__(self, backend: Any) -> None:
        self.times: list[float] = []
        self._inner = backend._script
        backend._script = self

    async def __call__(self, name: str, args: Any, **kw: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self._inner(name, args, **kw)
        finally:
            if name == "list":
                self.times.append((time.perf_counter() - started) * 1000)

    def __str__(self) -> str:
        t = sorted(self.times)
        return f"LIST calls {len(t)}: median {t[len(t) // 2]:.1f} ms, longest {t[-1]:.1f} ms"


def slow_calls(client: Any, root: str, sha: str, since: int | None) -> Any:
    """The server's own word: this namespace's LIST calls in the slow log (those over
    slowlog-log-slower-than, 10 ms by default) after entry ``since``; None: the last id."""
    entries = client.slowlog_get(128)
    if since is None:
        return max((e["id"] for e in entries), default=-1)
    ours = [
        e["duration"] / 1000
        for e in entries
        if e["id"] > since and root.encode() in e["command"] and sha.encode() in e["command"]
    ]
    limit = client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    longest = f", longest {max(ours):.1f} ms" if ours else ""
    return f"server: {len(ours)} LIST calls over {int(limit) / 1000:g} ms{longest}"


async def timed(backend: Any, flt: JobFilter, pages: int, repeat: int) -> tuple[float, int]:
    times, got = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        cursor = None
        for _ in range(pages):
            page = await backend.list_jobs(
                JobFilter(
                    status=flt.status,
                    task=flt.task,
                    queue=flt.queue,
                    limit=flt.limit,
                    cursor=cursor,
                )
            )
            cursor = page.next_cursor
        times.append(time.perf_counter() - started)
        got = len(page.jobs)
    return statistics.median(times) * 1000, got


async def run(url: str, n: int, repeat: int, one_time: bool) -> None:
    prefix = f"ofl{uuid.uuid4().hex[:4]}"
    root = "{" + prefix + "}:"
    client = redis.Redis.from_url(url, decode_responses=True)
    backend = RedisBackend(f"{url}?prefix={prefix}")
    await backend.open()
    try:
        started = time.perf_counter()
        await fill(backend, n, n if one_time else BATCH)
        print(f"{n} jobs submitted and drained in {time.perf_counter() - started:.1f} s")
        cases = [
            ("first page", JobFilter(limit=50), 1),
            ("status=failed", JobFilter(status=State.FAILED, limit=50), 1),
            ("task=rare", JobFilter(task="rare", limit=50), 1),
            ("succeeded, queue=default", JobFilter(status=State.SUCCEEDED, queue="default"), 1),
            ("20th page (cursors)", JobFilter(limit=50), 20),
        ]
        longest = Longest(backend)
        sha = backend._scripts["list"].sha
        for name, flt, pages in cases:
            longest.times = []
            seen = slow_calls(client, root, sha, None)
            ms, got = await timed(backend, flt, pages, repeat)
            print(f"  {name:<26} {ms:8.1f} ms  ({got} jobs on the last page; {longest})")
            print(f"  {'':<26} {slow_calls(client, root, sha, seen)}")
    finally:
        await backend.close()
        keys = list(client.scan_iter(match=root + "*", count=5000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--one-time", action="store_true", help="submit all N jobs in one call: one created_at"
    )
    args = parser.parse_args()
    asyncio.run(run(args.redis_url, args.n, args.repeat, args.one_time))


if __name__ == "__main__":
    main()
