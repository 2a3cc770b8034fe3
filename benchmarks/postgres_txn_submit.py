"""What a transactional submit adds to the caller's own transaction (issue 18, target < 1 ms p50).

    .venv/bin/python benchmarks/postgres_txn_submit.py \
        --url postgresql://postgres@127.0.0.1:5432/postgres [--n 1000]

Each round is one caller transaction that inserts an order row and commits. Rounds alternate
between "order only" and "order + ``task.options(connection=conn).submit(...)``", so both see
the same server and load. Printed per driver (psycopg sync, psycopg async, SQLAlchemy Session):
the submit call alone and the whole transaction (order + submit + commit) against the order-only
transaction, p50 and p99 in milliseconds over ``--n`` rounds each (after 50 warm-up rounds).
The default durable commit is kept (synchronous_commit on), as an app would have it. Works in
a fresh schema and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

import offload

WARMUP = 50
#: Seconds per round: order-only transactions, transactions with a submit, the submit calls.
Rounds = tuple[list[float], list[float], list[float]]


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(name: str, plain: list[float], full: list[float], call: list[float]) -> None:
    print(
        f"{name:<18} submit call p50 {pct(call, 0.5):.3f} p99 {pct(call, 0.99):.3f} ms | "
        f"tx with submit p50 {pct(full, 0.5):.3f} p99 {pct(full, 0.99):.3f} ms | "
        f"tx without p50 {pct(plain, 0.5):.3f} p99 {pct(plain, 0.99):.3f} ms | "
        f"added p50 {pct(full, 0.5) - pct(plain, 0.5):.3f} ms"
    )


def sync_rounds(
    n: int,
    submit: Callable[[int], object],
    order: Callable[[int], None],
    commit: Callable[[], None],
) -> Rounds:
    plain: list[float] = []
    full: list[float] = []
    call: list[float] = []
    for i in range(WARMUP + n):
        for with_job in (False, True):
            t0 = time.perf_counter()
            order(i)
            t1 = time.perf_counter()
            if with_job:
                submit(i)
            t2 = time.perf_counter()
            commit()
            t3 = time.perf_counter()
            if i >= WARMUP:
                (full if with_job else plain).append(t3 - t0)
                if with_job:
                    call.append(t2 - t1)
    return plain, full, call


def run_psycopg(app: offload.App, mail: Any, conninfo: str, schema: str, n: int) -> None:
    with psycopg.connect(conninfo) as conn:
        sql = f'INSERT INTO "{schema}".orders (id) VALUES (%s)'
        tag = uuid.uuid4().hex

        def order(i: int) -> None:
            conn.execute(sql, (f"{tag}-{i}-{time.perf_counter_ns()}",))  # type: ignore[arg-type]

        task = mail.options(connection=conn)
        report("psycopg sync", *sync_rounds(n, lambda i: task.submit(i), order, conn.commit))


def run_sqlalchemy(app: offload.App, mail: Any, conninfo: str, schema: str, n: int) -> None:
    import sqlalchemy
    from sqlalchemy.orm import Session

    engine = sqlalchemy.create_engine(conninfo.replace("postgresql://", "postgresql+psycopg://"))
    stmt = sqlalchemy.text(f'INSERT INTO "{schema}".orders (id) VALUES (:id)')
    try:
        with Session(engine) as session:

            def order(i: int) -> None:
                session.execute(stmt, {"id": f"sa-{i}-{time.perf_counter_ns()}"})

            task = mail.options(session=session)
            rounds = sync_rounds(n, lambda i: task.submit(i), order, session.commit)
            report("SQLAlchemy Session", *rounds)
    finally:
        engine.dispose()


async def run_async(app: offload.App, mail: Any, conninfo: str, schema: str, n: int) -> None:
    plain: list[float] = []
    full: list[float] = []
    call: list[float] = []
    sql = f'INSERT INTO "{schema}".orders (id) VALUES (%s)'
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        task = mail.options(connection=conn)
        for i in range(WARMUP + n):
            for with_job in (False, True):
                t0 = time.perf_counter()
                await conn.execute(sql, (f"a-{i}-{time.perf_counter_ns()}",))  # type: ignore[arg-type]
                t1 = time.perf_counter()
                if with_job:
                    await task.asubmit(i)
                t2 = time.perf_counter()
                await conn.commit()
                t3 = time.perf_counter()
                if i >= WARMUP:
                    (full if with_job else plain).append(t3 - t0)
                    if with_job:
                        call.append(t2 - t1)
    report("psycopg async", plain, full, call)
    await app.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    schema = "txn_" + uuid.uuid4().hex[:8]
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[arg-type]
        admin.execute(f'CREATE TABLE "{schema}".orders (id text PRIMARY KEY)')  # type: ignore[arg-type]
    app = offload.App(f"{args.url}?schema={schema}")

    @app.task(name="mail")
    def mail(order: int) -> None:
        pass

    try:
        run_psycopg(app, mail, args.url, schema, args.n)
        asyncio.run(run_async(app, mail, args.url, schema, args.n))
        run_sqlalchemy(app, mail, args.url, schema, args.n)
        print(f"{args.n} rounds per driver, load average {os.getloadavg()[0]:.1f}")
    finally:
        app.close()
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
