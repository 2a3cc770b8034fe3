"""End-to-end no-op throughput of the PostgreSQL job queues Procrastinate and PgQueuer.

The same workload as ``benchmarks/backend_bench.py --backend postgres`` (its ``e2e_async``): a
queue pre-filled with N async no-op jobs in bulk, then one worker with 10 concurrent slots
drains it; jobs/s = N / (last finish - first start). Run in the peers' own virtualenv (never
offload's test lock), on the same server, in a fresh database per system, dropped afterwards::

    python3 -m venv /tmp/pgpeers && /tmp/pgpeers/bin/pip install procrastinate pgqueuer asyncpg
    /tmp/pgpeers/bin/python benchmarks/peers/pg_peers.py [--url URL] [--jobs 5000] [--runs 3]

Knobs: Procrastinate 3.x with its psycopg connector, ``run_worker_async(concurrency=10,
wait=False)`` (it exits once the queue is empty; LISTEN/NOTIFY on, its defaults otherwise),
jobs deferred with ``batch_defer_async``; PgQueuer 1.x on asyncpg, ``run(batch_size=10,
mode=drain)``, jobs enqueued with one ``Queries.enqueue`` of N. Both workers run in this process
(no interpreter start-up counted, as backend_bench counts from the first claim).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

SLOTS = 10


def database_url(base: str, name: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


async def procrastinate_e2e(url: str, n: int) -> float:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    stamps: list[float] = []

    @app.task(name="noop")
    async def noop() -> None:
        stamps.append(time.perf_counter())

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for start in range(0, n, 1000):
            await noop.batch_defer_async(*[{} for _ in range(min(1000, n - start))])
        began = time.perf_counter()
        await app.run_worker_async(concurrency=SLOTS, wait=False, install_signal_handlers=False)
    assert len(stamps) == n, f"procrastinate ran {len(stamps)} of {n} jobs"
    return n / (max(stamps) - began)


async def pgqueuer_e2e(url: str, n: int) -> float:
    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    conn = await asyncpg.connect(url)
    try:
        driver = AsyncpgDriver(conn)
        await Queries(driver).install()
        for start in range(0, n, 1000):
            size = min(1000, n - start)
            await Queries(driver).enqueue(["noop"] * size, [None] * size, [0] * size)
        pgq = PgQueuer(driver)
        stamps: list[float] = []

        @pgq.entrypoint("noop")
        async def noop(job: Any) -> None:
            stamps.append(time.perf_counter())

        began = time.perf_counter()
        await pgq.run(batch_size=SLOTS, mode=QueueExecutionMode.drain)
    finally:
        await conn.close()
    assert len(stamps) == n, f"pgqueuer ran {len(stamps)} of {n} jobs"
    return n / (max(stamps) - began)


SYSTEMS = {"procrastinate": procrastinate_e2e, "pgqueuer": pgqueuer_e2e}


async def one(base: str, system: str, n: int) -> float:
    name = f"peers_{system}_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(base, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        try:
            return await SYSTEMS[system](database_url(base, name), n)
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # type: ignore[arg-type]


async def main(base: str, n: int, runs: int) -> None:
    results: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    for run in range(runs):  # systems alternate, so machine drift hits both alike
        for system in SYSTEMS:
            rate = await one(base, system, n)
            results[system].append(rate)
            print(f"run {run + 1}: {system} {rate:,.0f} jobs/s", flush=True)
    print("| System | End-to-end async no-op [jobs/s], median (min to max) |")
    print("|---|---|")
    for system, rates in results.items():
        print(
            f"| {system} | {statistics.median(rates):,.0f} ({min(rates):,.0f} to "
            f"{max(rates):,.0f}) |"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--runs", type=int, default=3)
    ns = p.parse_args()
    asyncio.run(main(ns.url, ns.jobs, ns.runs))
