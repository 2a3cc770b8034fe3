"""Where a PostgreSQL pickup's time goes (issue 18, target: p50 <= 5 ms with LISTEN/NOTIFY).

    cd benchmarks && ../.venv/bin/python postgres_pickup.py \
        [--url postgresql://postgres@127.0.0.1:5432/postgres] [--samples 200] [--runs 2]

One real worker process (``offload worker backend_bench:app``) idles on a fresh schema; this
process submits one no-op at a time, pausing 20-100 ms between samples, and waits for each to
finish before the next. A thread of its own ``LISTEN``s on the schema's channel and notes when
each ``NOTIFY`` arrives. Per sample (milliseconds, server and client share the machine's clock):

- created -> returned: the submit itself (its clock read, insert, commit, and the wake-up);
- created -> notified: until a listener holds the ``NOTIFY``;
- notified -> started: the worker's side (its listener, its wake-up, the claim up to the clock
  read that dates ``started_at``);
- created -> started: the pickup latency of docs/benchmarks.md (``backend_bench.py``).

``--mode txn`` submits with ``task.options(connection=conn)`` inside a transaction of this
process instead, which sends the NOTIFY at its commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
from backend_bench import build_app, running_worker, task_of

PAUSE = (0.02, 0.1)
SETTLE = 1.5


class Notes:
    """Arrival times of the channel's notifications, noted by a thread of its own."""

    def __init__(self, conninfo: str, channel: str) -> None:
        self.times: list[float] = []
        self._stop = threading.Event()
        self._conn = psycopg.connect(conninfo, autocommit=True)
        self._conn.execute(f'LISTEN "{channel}"')  # type: ignore[arg-type]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in self._conn.notifies(timeout=0.2):
                self.times.append(time.time())

    def after(self, t: float) -> float | None:
        return next((x for x in self.times if x >= t), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()


async def one_run(
    conninfo: str, samples: int, mode: str, rng: random.Random
) -> dict[str, list[float]]:
    schema = "pickup_" + uuid.uuid4().hex[:8]
    url = f"{conninfo}?schema={schema}"
    app = build_app(url)
    task = task_of(app, "noop")
    out: dict[str, list[float]] = {k: [] for k in ("returned", "notified", "worker", "started")}
    try:
        await app.backend()
        notes = Notes(conninfo, f"offload:{schema}")
        conn = await psycopg.AsyncConnection.connect(conninfo)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                async with running_worker(url, Path(tmp) / "worker.log", None):
                    await asyncio.sleep(SETTLE)
                    for _ in range(samples):
                        if mode == "txn":
                            job = await task.options(connection=conn).asubmit()
                            await conn.commit()
                        else:
                            job = await task.asubmit()
                        returned = time.time()
                        await asyncio.sleep(rng.uniform(*PAUSE))
                        while not (await job.arefresh()).record.is_terminal:
                            await asyncio.sleep(0.005)
                        rec = job.record
                        started = rec.started_at or 0.0
                        notified = notes.after(rec.created_at) or started
                        out["returned"].append(1000 * (returned - rec.created_at))
                        out["notified"].append(1000 * (notified - rec.created_at))
                        out["worker"].append(1000 * (started - notified))
                        out["started"].append(1000 * (started - rec.created_at))
        finally:
            await conn.close()
            notes.close()
    finally:
        await app.aclose()
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--mode", choices=["pool", "txn"], default="pool")
    args = parser.parse_args()
    rng = random.Random(18)
    for run in range(args.runs):
        load = os.getloadavg()[0]
        res = asyncio.run(one_run(args.url, args.samples, args.mode, rng))
        parts = []
        for key, label in (
            ("returned", "created->returned"),
            ("notified", "created->notified"),
            ("worker", "notified->started"),
            ("started", "created->started"),
        ):
            q = statistics.quantiles(res[key], n=100, method="inclusive")
            parts.append(f"{label} p50 {q[49]:.2f} p95 {q[94]:.2f}")
        print(f"run {run + 1} ({args.mode}, load {load:.1f}): " + " | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
