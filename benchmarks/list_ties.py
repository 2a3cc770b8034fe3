"""What listing ended Redis jobs costs when thousands share one creation time.

    .venv/bin/python benchmarks/list_ties.py [-n 1000 10000] [--limit 50 200] [--repeat 3]
        [--redis-url redis://127.0.0.1:6379/14]

For each N: submits N jobs with one created_at (a ManualClock that does not move: as a bulk
submit_many stores a chunk with one server time, here all chunks), drains them as a worker
does (every 100th job of task "rare", failing), then pages through all of them with each
limit and filter (none, status=failed, task=rare), following cursors; median of --repeat
passes of the first page, the middle page and the whole walk, plus the longest LIST script
call (timed at the client). Checks every walk visits each job once, newest first. Uses only
the Backend API (and wraps its ``_script``), so the same script times an older tree
(PYTHONPATH=<its src>).
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
from offload.core.clock import ManualClock
from offload.core.ids import new_job_id
from offload.core.job import JobFilter, Lease, NewJob
from offload.core.states import State

BATCH = 1000


async def fill(backend: Any, n: int) -> None:
    for start in range(0, n, BATCH):
        jobs = [
            NewJob(id=new_job_id(), task="rare" if i % 100 == 0 else "noop", args=[], kwargs={})
            for i in range(start, min(n, start + BATCH))
        ]
        await backend.submit(jobs)
    done = 0
    while done < n:
        claimed = await backend.claim("bench", {"default": 200}, 200, 600.0)
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


class Calls:
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


async def walk(backend: Any, flt: JobFilter) -> tuple[list[float], list[str]]:
    """Every page's time in ms, and the ids seen in order."""
    times, seen, cursor = [], [], None
    while True:
        started = time.perf_counter()
        page = await backend.list_jobs(
            JobFilter(status=flt.status, task=flt.task, limit=flt.limit, cursor=cursor)
        )
        times.append((time.perf_counter() - started) * 1000)
        seen += [j.id for j in page.jobs]
        if (cursor := page.next_cursor) is None:
            return times, seen


async def run(url: str, sizes: list[int], limits: list[int], repeat: int) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    for n in sizes:
        prefix = f"ofl{uuid.uuid4().hex[:4]}"
        root = "{" + prefix + "}:"
        backend = RedisBackend(f"{url}?prefix={prefix}", clock=ManualClock())
        await backend.open()
        try:
            await fill(backend, n)
            calls = Calls(backend)
            print(f"{n} ended jobs, one created_at")
            for limit in limits:
                for name, flt in (
                    ("none", JobFilter(limit=limit)),
                    ("status=failed", JobFilter(status=State.FAILED, limit=limit)),
                    ("task=rare", JobFilter(task="rare", limit=limit)),
                ):
                    firsts, middles, totals, longest, pages = [], [], [], [], 0
                    expected = None
                    for _ in range(repeat):
                        calls.times = []
                        times, seen = await walk(backend, flt)
                        if expected is None:
                            jobs = [await backend.get(i) for i in seen]
                            assert all(j is not None for j in jobs)
                            keys = [(j.created_at, j.id) for j in jobs if j is not None]
                            assert keys == sorted(set(keys), reverse=True), "order or repeats"
                            expected = seen
                        assert seen == expected
                        want = n if flt.status is None and flt.task is None else n // 100
                        assert len(seen) == want, (len(seen), want)
                        pages = len(times)
                        firsts.append(times[0])
                        middles.append(times[len(times) // 2])
                        totals.append(sum(times))
                        longest.append(max(calls.times))
                    med = statistics.median
                    print(
                        f"  limit {limit:>3} {name:<14} pages {pages:>4}: first {med(firsts):7.2f}"
                        f" ms, middle {med(middles):7.2f} ms, all {med(totals):9.1f} ms,"
                        f" longest LIST call {med(longest):6.2f} ms"
                    )
        finally:
            await backend.close()
            keys = list(client.scan_iter(match=root + "*", count=5000))
            for i in range(0, len(keys), 1000):
                client.unlink(*keys[i : i + 1000])
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--limit", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    asyncio.run(run(args.redis_url, args.n, args.limit, args.repeat))


if __name__ == "__main__":
    main()
