"""The flows beside "enqueue all, then drain" (issue 22 items 6 and 7; docs/peers.md).

``web``: what a web app does. Per workload, on an emptied Redis every time:

1. no worker: the client enqueues ``jobs`` one at a time (rate, the client's CPU per enqueue,
   Redis CPU per enqueue);
2. a worker runs (started first, warmed up by a few pickup jobs), then one producer (the
   client process, one job at a time) enqueues ``jobs``: the producer's rate while the worker
   ran, the client's CPU per enqueue, the end-to-end rate (``jobs`` / first enqueue call to last
   completion), the worker's CPU per job and Redis CPU per job (``INFO cpu`` used_cpu_sys +
   used_cpu_user, from the first enqueue to the last completion, divided by ``jobs``).

``scale``: for every N of ``--processes`` and every mode the adapter's ``scaled`` offers, a
queue pre-filled with ``--scale-jobs`` no-ops one at a time, then the workers start and drain
it; jobs/s, worker CPU per job and Redis CPU per job between the 10 % and 90 % completion marks
(so that worker start-up, and workers starting one after the other, are left out).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from systems import Config

from peerbench import procs

if TYPE_CHECKING:
    from peerbench.measure import Bench, Sample

SETTLE = 0.3  # seconds after the warm-up jobs, so that their tally datagrams are in
WARMUP = 3
MARKS = (0.1, 0.9)  # the scale flow's window, as fractions of the jobs


def timed_enqueue(client: Any, workload: str, n: int) -> dict[str, float]:
    got: dict[str, float] = client.call("timed_enqueue", workload=workload, n=n, wait=60 + n / 20)
    return got


def wait_for(bench: Bench, workers: list[procs.Worker], n: int, stall: float) -> None:
    """Poll the tally until ``n`` jobs are done; fail when a worker exits or nothing moves."""
    last, moved = -1, time.monotonic()
    while True:
        count = bench.done()
        now = time.monotonic()
        if count >= n:
            return
        if count != last:
            last, moved = count, now
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"a worker exited after {count}/{n} jobs:\n{worker.log_tail()}")
        if now - moved > stall:
            raise TimeoutError(f"stuck at {count}/{n} jobs for {stall:.0f} s")
        time.sleep(0.005)


def web(bench: Bench, config: Config, workload: str) -> Sample:
    n, w = bench.plan.jobs, workload
    sample: dict[str, float] = {}
    with bench.session(config, f"web-alone-{w}") as client:
        redis0 = bench.server.cpu()
        got = timed_enqueue(client, w, n)
        redis1 = bench.server.cpu()
    sample[f"web_submit_alone_{w}"] = n / got["seconds"]
    sample[f"web_client_cpu_alone_{w}"] = 1000 * got["cpu"] / n
    if config.uses_redis:
        sample[f"web_redis_cpu_alone_{w}"] = 1e6 * (redis1 - redis0) / n
    with bench.session(config, f"web-{w}") as client:
        worker = bench.start_worker(config, w, bench.worker_spec(client, w))
        try:
            client.call(
                "pickup", workload=w, samples=WARMUP, pause=[0.02, 0.05], timeout=90, wait=300
            )
            time.sleep(SETTLE)
            bench.tally.reset()
            redis0, cpu0 = bench.server.cpu(), procs.cpu_seconds(worker.pid)
            got = timed_enqueue(client, w, n)
            wait_for(bench, [worker], n, stall=90)
            redis1, cpu1 = bench.server.cpu(), procs.cpu_seconds(worker.pid)
        finally:
            worker.stop()
    count, _first, final = bench.tally.read()
    sample[f"web_e2e_{w}"] = min(count, n) / max(1e-6, final - got["t0"])
    sample[f"web_submit_busy_{w}"] = n / got["seconds"]
    sample[f"web_client_cpu_busy_{w}"] = 1000 * got["cpu"] / n
    sample[f"web_worker_cpu_{w}"] = 1000 * (cpu1 - cpu0) / n
    if config.uses_redis:
        sample[f"web_redis_cpu_{w}"] = 1e6 * (redis1 - redis0) / n
    return sample


def workers_cpu(workers: list[procs.Worker]) -> float:
    return sum(procs.cpu_seconds(worker.pid) for worker in workers)


def scale_one(bench: Bench, config: Config, specs: list[dict[str, Any]], n: int) -> Sample:
    """Pre-fill ``n`` no-ops, start the workers of ``specs``, measure between the marks."""
    with bench.session(config, "scale") as client:
        timed_enqueue(client, "noop", n)
    marks = [max(1, int(n * m)) for m in MARKS]
    seen: list[tuple[int, float, float, float]] = []  # (count, time, worker CPU, Redis CPU)
    workers = [bench.start_worker(config, "noop", spec) for spec in specs]
    try:
        last, moved = -1, time.monotonic()
        while len(seen) < len(marks):
            count, now = bench.done(), time.monotonic()
            if count >= marks[len(seen)]:
                seen.append((count, now, workers_cpu(workers), bench.server.cpu()))
                continue
            if count != last:
                last, moved = count, now
            for worker in workers:
                if not worker.alive():
                    raise RuntimeError(f"a worker exited at {count}/{n}:\n{worker.log_tail()}")
            if now - moved > 90:
                raise TimeoutError(f"stuck at {count}/{n} jobs for 90 s")
            time.sleep(0.005)
        wait_for(bench, workers, n, stall=90)
    finally:
        for worker in workers:
            worker.stop()
    (c0, t0, w0, r0), (c1, t1, w1, r1) = seen
    jobs = max(1, c1 - c0)
    return {
        "rate": jobs / max(1e-6, t1 - t0),
        "cpu": 1e6 * (w1 - w0) / jobs,
        "redis": 1e6 * (r1 - r0) / jobs,
    }


def scale(bench: Bench, config: Config) -> Sample:
    sample: dict[str, float] = {}
    for p in bench.plan.processes:
        client = bench.client(config)
        try:
            modes: dict[str, list[dict[str, Any]]] = client.call(
                "scaled", workload="noop", concurrency=bench.plan.concurrency, processes=p
            )
        finally:
            client.close()
        if not modes:
            raise RuntimeError(f"{config.name} has no many-processes flow (no `scaled`)")
        for mode, specs in modes.items():
            got = scale_one(bench, config, specs, bench.plan.scale_jobs)
            for key, value in got.items():
                sample[f"scale_{key}_{mode}_{p}"] = value
    return sample
