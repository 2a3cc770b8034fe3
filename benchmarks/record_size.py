"""What a finished no-op job costs to keep: Redis memory and SQLite bytes on disk, per job.

    .venv/bin/python benchmarks/record_size.py [-n 20000] [--redis-url redis://127.0.0.1:6379/14]
        [--skip-sqlite] [--skip-redis]

Submits N no-op jobs (as App.prepare builds them: a fresh id, the default result_ttl of 7
days) to a private Redis namespace, drains them as a worker does (claim a batch, complete each
job with None), then reports for the namespace: the sum of MEMORY USAGE (exact, SAMPLES 0) of
its keys per job, the server's used_memory delta per job (noisy: the server is shared), keys
per job, and MEMORY USAGE per kind of key (j: job hashes, h: histories, f: buckets of ended
jobs, the i:* indexes, the rest). Then the same jobs in a fresh SQLite file: bytes per job
after VACUUM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import tempfile
import time
import uuid
from collections import Counter
from typing import Any

import redis

from offload.backends.redis import RedisBackend
from offload.backends.sqlite import SQLiteBackend
from offload.core.clock import ManualClock
from offload.core.ids import new_job_id, new_worker_id
from offload.core.job import Lease, NewJob
from offload.settings import Settings

BATCH = 200  # jobs per submit call and per claim (a worker's prefetch)


def new_jobs(n: int) -> list[NewJob]:
    ttl = Settings().result_ttl
    return [
        NewJob(id=new_job_id(), task="noop", args=[], kwargs={}, result_ttl=ttl) for _ in range(n)
    ]


async def fill_and_drain(backend: Any, n: int) -> None:
    """Submit n no-op jobs in batches, then claim and complete them all, as a worker would."""
    for start in range(0, n, BATCH):
        await backend.submit(new_jobs(min(BATCH, n - start)))
    done = 0
    worker = new_worker_id("worker")  # as long as a real worker's id
    while done < n:
        jobs = await backend.claim(worker, {"default": BATCH}, BATCH, 60.0)
        if not jobs:
            raise RuntimeError(f"nothing to claim after {done} of {n} jobs")
        await asyncio.gather(*(backend.complete(Lease(j.id, j.token), None) for j in jobs))
        done += len(jobs)


def kind(key: str, root: str) -> str:
    """A key's kind: its name under the root with ids and names taken out."""
    name = key[len(root) :]
    if name.startswith(("j:", "h:")):
        return name[:2] + "<id>"
    if name.startswith("f:"):
        return "f:<bucket>"
    return re.sub(r":[^:]*$", ":<name>", name) if name.startswith("i:") else name


def redis_figures(url: str, n: int) -> None:
    prefix = f"ofl{uuid.uuid4().hex[:4]}"  # as long as the default "offload"
    root = "{" + prefix + "}:"
    client = redis.Redis.from_url(url, decode_responses=True)
    before = int(client.info("memory")["used_memory"])
    backend = RedisBackend(f"{url}?prefix={prefix}")
    started = time.perf_counter()
    try:
        asyncio.run(run_backend(backend, n))
        elapsed = time.perf_counter() - started
        after = int(client.info("memory")["used_memory"])
        keys = list(client.scan_iter(match=root + "*", count=5000))
        sizes: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        for key in keys:
            k = kind(key, root)
            sizes[k] += int(client.memory_usage(key, samples=0) or 0)
            counts[k] += 1
        total = sum(sizes.values())
        print(f"Redis {client.info('server')['redis_version']}, {n} no-op jobs in {elapsed:.1f} s")
        print(f"  MEMORY USAGE of the namespace: {total / n:.0f} bytes/job ({total:,} bytes)")
        print(f"  used_memory delta (shared server, noisy): {(after - before) / n:.0f} bytes/job")
        print(f"  keys: {len(keys):,} ({len(keys) / n:.2f} per job)")
        for k, size in sizes.most_common():
            print(f"    {k:<24} {counts[k]:>7,} keys {size / n:>8.1f} bytes/job")
    finally:
        keys = list(client.scan_iter(match=root + "*", count=5000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
        client.close()


async def run_backend(backend: Any, n: int) -> None:
    await backend.open()
    try:
        await fill_and_drain(backend, n)
    finally:
        await backend.close()


async def fill_drain_prune(backend: SQLiteBackend, clock: ManualClock, n: int) -> None:
    """Fill and drain n jobs, let their result_ttl run out, prune them all."""
    await backend.open()
    try:
        await fill_and_drain(backend, n)
        clock.advance(Settings().result_ttl + 1)
        while await backend.prune(5000):
            pass
    finally:
        await backend.close()


def sqlite_size(path: str, vacuum: bool) -> int:
    db = sqlite3.connect(path)
    if vacuum:
        db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return os.path.getsize(path)


def sqlite_figures(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "size.db")
        started = time.perf_counter()
        asyncio.run(run_backend(SQLiteBackend(path, synchronous="off"), n))
        elapsed = time.perf_counter() - started
        raw = sqlite_size(path, vacuum=False)
        size = sqlite_size(path, vacuum=True)
        db = sqlite3.connect(path)
        pages = dict(db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
        db.close()
        print(f"SQLite {sqlite3.sqlite_version}, {n} no-op jobs in {elapsed:.1f} s")
        print(
            f"  file after drain: {raw / n:.0f} bytes/job; after VACUUM: {size / n:.0f} bytes/job"
        )
        for name, total in sorted(pages.items(), key=lambda item: -item[1])[:6]:
            print(f"    {name:<24} {total / n:>8.1f} bytes/job")
        # Pruned pages go on SQLite's freelist (auto_vacuum is off) and the next jobs reuse them.
        cycle = os.path.join(tmp, "cycle.db")
        clock = ManualClock()
        asyncio.run(
            fill_drain_prune(SQLiteBackend(cycle, synchronous="off", clock=clock), clock, n)
        )
        pruned = sqlite_size(cycle, vacuum=False)
        db = sqlite3.connect(cycle)
        free = db.execute("PRAGMA freelist_count").fetchone()[0] * 4096
        db.close()
        asyncio.run(run_backend(SQLiteBackend(cycle, synchronous="off", clock=clock), n))
        again = sqlite_size(cycle, vacuum=False)
        print(
            f"  after pruning them all: file {pruned / n:.0f} bytes/job, {free / n:.0f} of it free;"
        )
        print(f"  after as many jobs again: file {again / n:.0f} bytes/job (the free pages reused)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--skip-redis", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    if not args.skip_redis:
        redis_figures(args.redis_url, args.n)
    if not args.skip_sqlite:
        sqlite_figures(args.n)


if __name__ == "__main__":
    main()
