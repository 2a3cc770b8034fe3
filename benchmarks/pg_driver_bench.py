"""asyncpg against psycopg 3 (async) for the round trips the PostgreSQL backend makes.

Not part of offload's environment: asyncpg lives in a bench-only virtualenv::

    python3 -m venv /tmp/pgbench && /tmp/pgbench/bin/pip install asyncpg 'psycopg[binary]'
    /tmp/pgbench/bin/python benchmarks/pg_driver_bench.py [URL] [--n 2000]

Both drivers run the same two transactions, one at a time on one connection, in a fresh
schema that is dropped afterwards: a submit (``INSERT`` of one job row, ``COMMIT``) and a
claim (one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``,
``COMMIT``). ``synchronous_commit`` is off in these sessions, so the figures are the driver
and the protocol, not the disk's flush. Prepared statements on both (asyncpg always
prepares; psycopg prepares a statement from its fifth use).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-not-found, unused-ignore]
import psycopg

DDL = (
    "CREATE TABLE {s}.jobs (id bigserial PRIMARY KEY, status text NOT NULL, task text, "
    "args jsonb, run_at double precision); CREATE INDEX ON {s}.jobs (status, id)"
)
SUBMIT = "INSERT INTO {s}.jobs (status, task, args, run_at) VALUES ('queued', $1, $2, $3)"
CLAIM = (
    "UPDATE {s}.jobs SET status = 'running' WHERE id IN (SELECT id FROM {s}.jobs "
    "WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *"
)


def to_psycopg(sql: str) -> str:
    return sql.replace("$1", "%s").replace("$2", "%s").replace("$3", "%s")


async def timed(n: int, one: Callable[[], Awaitable[Any]]) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await one()
        samples.append(1e6 * (time.perf_counter() - t))
    return samples


async def with_asyncpg(url: str, s: str, n: int) -> dict[str, list[float]]:
    conn = await asyncpg.connect(url)
    await conn.execute("SET synchronous_commit = off")
    submit, claim = SUBMIT.format(s=s), CLAIM.format(s=s)

    async def do_submit() -> None:
        async with conn.transaction():
            await conn.execute(submit, "noop", "[]", time.time())

    async def do_claim() -> None:
        async with conn.transaction():
            await conn.fetch(claim)

    try:
        return {"submit": await timed(n, do_submit), "claim": await timed(n, do_claim)}
    finally:
        await conn.close()


async def with_psycopg(url: str, s: str, n: int) -> dict[str, list[float]]:
    conn = await psycopg.AsyncConnection.connect(url)
    await conn.execute("SET synchronous_commit = off")
    await conn.commit()
    submit, claim = to_psycopg(SUBMIT.format(s=s)), CLAIM.format(s=s)

    async def do_submit() -> None:
        async with conn.transaction():
            await conn.execute(submit, ("noop", "[]", time.time()))  # type: ignore[arg-type]

    async def do_claim() -> None:
        async with conn.transaction():
            await (await conn.execute(claim)).fetchall()  # type: ignore[arg-type]

    try:
        return {"submit": await timed(n, do_submit), "claim": await timed(n, do_claim)}
    finally:
        await conn.close()


async def main(url: str, n: int, rounds: int) -> None:
    results: dict[str, dict[str, list[float]]] = {"asyncpg": {}, "psycopg": {}}
    for _ in range(rounds):  # drivers alternate, so machine drift hits both alike
        for name, run in (("asyncpg", with_asyncpg), ("psycopg", with_psycopg)):
            s = f"drv_{uuid.uuid4().hex[:10]}"
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                await admin.execute(f"CREATE SCHEMA {s}")  # type: ignore[arg-type]
                await admin.execute(DDL.format(s=s))  # type: ignore[arg-type]
                try:
                    for op, samples in (await run(url, s, n)).items():
                        results[name].setdefault(op, []).extend(samples)
                finally:
                    await admin.execute(f"DROP SCHEMA {s} CASCADE")  # type: ignore[arg-type]
    print("| Driver | Transaction | p50 [us] | p90 [us] | per second (one connection) |")
    print("|---|---|---|---|---|")
    for name, ops in results.items():
        for op, samples in ops.items():
            q = statistics.quantiles(samples, n=10)
            rate = 1e6 * len(samples) / sum(samples)
            p50 = statistics.median(samples)
            print(f"| {name} | {op} | {p50:.0f} | {q[8]:.0f} | {rate:,.0f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("url", nargs="?", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--n", type=int, default=2000, help="transactions of each kind per round")
    p.add_argument("--rounds", type=int, default=3)
    ns = p.parse_args()
    asyncio.run(main(ns.url, ns.n, ns.rounds))
