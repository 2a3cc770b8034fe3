"""Pickup latency on an idle worker: offload on Redis and on SQLite, and Huey on the same Redis,
in one run (issue 22 item 3).

    cd benchmarks && ../.venv/bin/python pickup_bench.py --redis redis://127.0.0.1:6379/0 \
        [--systems offload-redis,offload-sqlite,huey] [--huey-python /path/to/python] \
        [--samples 200] [--runs 3]

One worker process per system (``offload worker pickup_bench:app --concurrency 10``; Huey:
``huey_consumer -w 10 -k thread``) idles; this process submits one no-op at a time from a
plain thread (offload: ``task.submit()``, Huey: calling the task), pausing 20-100 ms between
samples, and waits for each job's body to start before the next. The body's first statement
sends ``time.time()`` in a UDP datagram (pickup_common.stamp). Per sample: ms from the submit
call starting ("called") and from its return ("returned") to the body starting. The systems
take turns within each run; Huey runs from its own environment (``--huey-python``, with huey
and redis installed), its keys flushed after. offload uses a fresh namespace / database file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pickup_common import PORT_ENV, listener, sample, stamp

import offload

HERE = Path(__file__).resolve().parent


async def noop() -> None:
    stamp()


def build_app(backend: str | None = None) -> offload.App:
    """An App with the no-op task; ``backend=None`` reads ``$OFFLOAD_BACKEND``."""
    built = offload.App(backend)
    built.task(name="noop")(noop)
    return built


app = build_app()  # what the measured worker loads


def offload_run(url: str, samples: int, seed: int, log: Path) -> dict[str, list[float]]:
    sock = listener()
    env = {**os.environ, "OFFLOAD_BACKEND": url, PORT_ENV: str(sock.getsockname()[1])}
    argv = [sys.executable, "-m", "offload", "worker", "pickup_bench:app", "--concurrency", "10"]
    with open(log, "a") as out:
        worker = subprocess.Popen(argv, cwd=HERE, env=env, stdout=out, stderr=out)
    client = build_app(url)
    task = offload.Task(client, client.registry.get("noop"))
    try:
        got: dict[str, list[float]] = json.loads(sample(task.submit, sock, samples, seed))
        return got
    finally:
        worker.terminate()
        worker.wait(60)
        client.close()


def huey_run(python: str, redis: str, samples: int, seed: int) -> dict[str, list[float]]:
    argv = [python, "pickup_huey.py", redis, str(samples), str(seed)]
    done = subprocess.run(
        argv, cwd=HERE, env={**os.environ, "PICKUP_REDIS": redis}, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"the Huey run failed:\n{done.stderr[-3000:]}")
    got: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return got


def percentiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=10, method="inclusive")
    return q[4], q[8]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    p.add_argument("--systems", default="offload-redis,offload-sqlite,huey")
    p.add_argument("--huey-python", default="python3")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--runs", type=int, default=3)
    ns = p.parse_args()
    systems = ns.systems.split(",")
    results: dict[str, list[tuple[float, float, float, float]]] = {s: [] for s in systems}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        for run in range(ns.runs):
            for system in systems if run % 2 == 0 else systems[::-1]:
                load = os.getloadavg()[0]
                seed = 22 + run
                if system == "huey":
                    got = huey_run(ns.huey_python, ns.redis, ns.samples, seed)
                elif system == "offload-redis":
                    url = f"{ns.redis}?prefix=pickup-{uuid.uuid4().hex[:8]}"
                    got = offload_run(url, ns.samples, seed, log)
                    drop_namespace(url)
                elif system == "offload-sqlite":
                    url = f"sqlite:///{tmp}/pickup-{run}.db"
                    got = offload_run(url, ns.samples, seed, log)
                else:
                    raise SystemExit(f"unknown system {system!r}")
                c50, c90 = percentiles(got["called"])
                r50, r90 = percentiles(got["returned"])
                results[system].append((c50, c90, r50, r90))
                print(
                    f"run {run + 1} {system:15} load {load:.2f}: from the call p50 {c50:.2f} "
                    f"p90 {c90:.2f} ms | from the return p50 {r50:.2f} p90 {r90:.2f} ms",
                    flush=True,
                )
                time.sleep(1.0)
    print(f"\nmedians of {ns.runs} runs, {ns.samples} samples each (ms):")
    print("| system | from the call p50 | p90 | from the return p50 | p90 |")
    print("|---|---:|---:|---:|---:|")
    for system, rows in results.items():
        med = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(f"| {system} | {med[0]:.2f} | {med[1]:.2f} | {med[2]:.2f} | {med[3]:.2f} |")


def drop_namespace(url: str) -> None:
    import redis

    base, prefix = url.split("?prefix=")
    r = redis.Redis.from_url(base)
    keys = list(r.scan_iter(match="{" + prefix + "}:*", count=1000))
    for i in range(0, len(keys), 500):
        r.delete(*keys[i : i + 500])
    r.close()


if __name__ == "__main__":
    main()
