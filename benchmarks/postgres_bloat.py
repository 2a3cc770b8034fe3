"""Does the PostgreSQL layout bloat under a sustained load? Sizes of the tables over time.

    .venv/bin/python benchmarks/postgres_bloat.py --url postgresql://postgres@127.0.0.1/postgres \
        [--seconds 420] [--per-tick 22]

Every 0.1 s (or as fast as it can, when that is slower) it submits ``--per-tick`` jobs with
``result_ttl=0``, claims what is queued and completes it; it prunes every second, as workers do.
Every 15 s it prints the seconds, the jobs done, and per table (jobs, history) the total size in
KiB with indexes, live rows, dead rows and autovacuum runs. Use a server with autovacuum on (the
default); it works in a fresh schema and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import psycopg

from offload.backends.postgres import PostgresBackend
from offload.core.job import Lease, NewJob


def sizes(url: str, schema: str) -> list[tuple[str, int, int, int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname, pg_total_relation_size(relid), n_live_tup, n_dead_tup, "
            "autovacuum_count FROM pg_stat_user_tables WHERE schemaname = %s "
            "AND relname IN ('jobs', 'history') ORDER BY relname",
            (schema,),
        ).fetchall()
    return [(r[0], r[1] // 1024, r[2], r[3], r[4]) for r in rows]


async def run(url: str, seconds: float, per_tick: int) -> None:
    schema = "bloat_" + uuid.uuid4().hex[:8]
    backend = PostgresBackend.from_url(f"{url}?schema={schema}")
    await backend.open()
    done, tick, start = 0, 0, time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            began = time.monotonic()
            await backend.submit(
                [
                    NewJob(id=uuid.uuid4().hex, task="t", args=[1], kwargs={}, result_ttl=0.0)
                    for _ in range(per_tick)
                ]
            )
            claimed = await backend.claim("w", {"default": 100}, 100, 30.0)
            await asyncio.gather(*(backend.complete(Lease(j.id, j.token), None) for j in claimed))
            done += len(claimed)
            tick += 1
            if tick % 10 == 0:
                await backend.prune(500)
            if tick % 150 == 0:
                print(round(time.monotonic() - start), done, sizes(url, schema), flush=True)
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - began)))
        print(f"{done / (time.monotonic() - start) * 60:.0f} jobs/minute")
    finally:
        await backend.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=420.0)
    parser.add_argument("--per-tick", type=int, default=22, help="jobs submitted per 0.1 s")
    ns = parser.parse_args()
    asyncio.run(run(ns.url, ns.seconds, ns.per_tick))


if __name__ == "__main__":
    main()
