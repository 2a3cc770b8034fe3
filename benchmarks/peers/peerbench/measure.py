"""The measurements, the same for every configuration (docs/peers.md says what each means).

For each configuration and run, on an emptied Redis (``FLUSHALL``) every time:

1. per workload: enqueue ``jobs`` one at a time (submit rate; Redis memory per queued job for
   the no-op), then start the worker and let it drain the queue (end-to-end throughput from the
   counter's first to last completion, worker CPU per job, peak worker memory);
2. bulk enqueue of ``jobs`` no-ops, where the system has one;
3. pickup on an idle worker: idle CPU over a few seconds, then one no-op at a time.

These are the flows ``drain``, ``bulk`` and ``pickup`` (the default); ``web`` (one producer
while the worker runs) and ``scale`` (many worker processes) are in ``flows.py``.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from systems import Config

from peerbench import flows as flows_
from peerbench import procs, venvs
from peerbench.client import ClientError, ClientProc
from peerbench.redis_server import RedisServer
from peerbench.tally import Tally

POLL = 0.02  # seconds between reads of the completion tally while a worker drains
MEMORY_EVERY = 0.25  # seconds between samples of the worker tree's memory
STALL = 90.0  # a drain fails when the tally does not move for this long (start-up included)
IDLE_SETTLE = 1.0  # seconds an idle worker rests after the warm-up jobs
IDLE_WINDOW = 3.0  # seconds over which idle CPU is measured
WARMUP = 3  # pickup jobs run (and dropped) before the samples: connections, imports, caches
PICKUP_PAUSE = (0.02, 0.1)  # random pause after each pickup sample, seconds

Sample = dict[str, float]


@dataclass(frozen=True)
class Plan:
    jobs: int
    runs: int
    pickup_samples: int
    concurrency: int
    workloads: tuple[str, ...]
    configs: tuple[Config, ...]
    flows: tuple[str, ...] = ("drain", "bulk", "pickup")
    processes: tuple[int, ...] = (1, 2, 4)  # the scale flow's worker processes
    scale_jobs: int = 20_000  # the scale flow's pre-filled no-ops


@dataclass
class Results:
    """Every value measured, by configuration and figure (one value per run)."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    about: dict[str, dict[str, Any]] = field(default_factory=dict)  # versions, knobs, bulk

    def add(self, config: str, sample: Sample) -> None:
        for key, value in sample.items():
            self.values.setdefault(config, {}).setdefault(key, []).append(value)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, server: RedisServer, folder: Path, plan: Plan) -> None:
        self.server, self.folder, self.plan = server, folder, plan
        self.tally = Tally()

    # -- processes -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PEERS_", "OFFLOAD_"))}
        env.pop("VIRTUAL_ENV", None)
        return {
            **env,
            "PYTHONPATH": str(venvs.HERE),
            "PYTHONUNBUFFERED": "1",
            "PEERS_REDIS_URL": self.server.url(0),
            "PEERS_COUNTER_URL": self.server.url(1),
            "PEERS_TALLY_PORT": str(self.tally.port),
            "PEERS_CONCURRENCY": str(self.plan.concurrency),
        }

    def client(self, config: Config) -> ClientProc:
        log = self.folder / f"{config.name}-client.log"
        return ClientProc(venvs.python(config.venv), config.name, venvs.HERE, self.env(), log)

    @contextmanager
    def session(self, config: Config, step: str) -> Iterator[ClientProc]:
        """A fresh client process connected to an emptied Redis (and a new SQLite file).

        Every step gets its own client process, so no system carries state (connections,
        declared queues, consumer groups) across the ``FLUSHALL`` between steps.
        """
        self.server.reset()
        self.tally.reset()
        db = self.folder / f"{config.name}-{step}-{uuid.uuid4().hex[:8]}.db"
        client = self.client(config)
        try:
            client.call("open", env={"PEERS_SQLITE_PATH": str(db)})
            yield client
            client.call("close")
        finally:
            client.close()

    def worker_spec(self, client: ClientProc, workload: str) -> dict[str, Any]:
        """The worker's argv and extra environment, from the system's adapter."""
        spec: dict[str, Any] = client.call(
            "worker", workload=workload, concurrency=self.plan.concurrency
        )
        return spec

    def start_worker(self, config: Config, workload: str, spec: dict[str, Any]) -> procs.Worker:
        log = self.folder / f"{config.name}-{workload}-worker.log"
        return procs.Worker.start(spec["argv"], {**self.env(), **spec["env"]}, venvs.HERE, log)

    # -- one configuration, one run --------------------------------------------------------------
    def run(self, config: Config, results: Results) -> None:
        if config.name not in results.about:
            client = self.client(config)
            try:
                results.about[config.name] = client.call("describe")
            finally:
                client.close()
        flows = self.plan.flows
        steps: list[tuple[str, Callable[[], Sample]]] = []
        if "drain" in flows:
            steps += [(w, functools.partial(self.drain, config, w)) for w in self.plan.workloads]
        if "web" in flows:
            steps += [
                (f"web-{w}", functools.partial(flows_.web, self, config, w))
                for w in self.plan.workloads
            ]
        if "bulk" in flows and results.about[config.name]["bulk"]:
            steps.append(("bulk", functools.partial(self.bulk, config)))
        if "pickup" in flows:
            steps.append(("pickup", functools.partial(self.pickup, config)))
        if "scale" in flows:
            steps.append(("scale", functools.partial(flows_.scale, self, config)))
        try:
            for name, step in steps:
                started = time.monotonic()
                try:
                    sample = step()
                except (ClientError, RuntimeError, TimeoutError) as exc:
                    message = f"{name}: {exc}"
                    results.errors.setdefault(config.name, []).append(message)
                    progress(f"  {config.name:15} {name:7} FAILED: {message[:2000]}")
                    continue
                results.add(config.name, sample)
                shown = ", ".join(f"{k} {v:,.4g}" for k, v in sample.items())
                progress(f"  {config.name:15} {name:7} {time.monotonic() - started:5.1f}s {shown}")
        finally:
            for db in self.folder.glob(f"{config.name}-*.db*"):
                db.unlink()

    # -- 1. submit, then drain -------------------------------------------------------------------
    def drain(self, config: Config, workload: str) -> Sample:
        n = self.plan.jobs
        with self.session(config, workload) as client:
            before = self.server.used_memory()
            seconds = client.call("enqueue", workload=workload, n=n, wait=60 + n / 20)
            queued = self.server.used_memory() - before
            spec = self.worker_spec(client, workload)
        sample = {f"submit_{workload}": n / seconds}
        if workload == "noop" and config.uses_redis:
            sample["redis_bytes"] = queued / n
        worker = self.start_worker(config, workload, spec)
        try:
            sample.update(self.watch(worker, workload, n))
        finally:
            worker.stop()
        return sample

    def redis_cpu(self) -> float:
        """CPU seconds the Redis server has used (the systems' only: drains report by UDP)."""
        return procs.cpu_seconds(self.server.pid)

    def done(self) -> int:
        return self.tally.read()[0]

    def watch(self, worker: procs.Worker, workload: str, n: int) -> Sample:
        """Poll the tally until ``n`` jobs are done; measure the worker tree meanwhile."""
        cpu0: tuple[float, int, float] | None = None  # (worker CPU, done count, Redis CPU)
        peak_rss = peak_pss = 0
        next_memory = 0.0
        last, moved = 0, time.monotonic()
        while True:
            count = self.done()
            now = time.monotonic()
            if cpu0 is None and count >= 1:
                cpu0 = (procs.cpu_seconds(worker.pid), count, self.redis_cpu())
            if count >= n:
                cpu1, redis1 = procs.cpu_seconds(worker.pid), self.redis_cpu()
                break
            if now >= next_memory:
                rss, pss = procs.memory(worker.pid)
                peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
                next_memory = now + MEMORY_EVERY
            if count != last:
                last, moved = count, now
            if not worker.alive():
                raise RuntimeError(
                    f"the worker exited after {count}/{n} jobs:\n{worker.log_tail()}"
                )
            if now - moved > STALL:
                raise TimeoutError(
                    f"stuck at {count}/{n} jobs for {STALL:.0f} s:\n{worker.log_tail()}"
                )
            time.sleep(POLL)
        rss, pss = procs.memory(worker.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        count, first, final = self.tally.read()
        assert cpu0 is not None
        jobs_in_window = max(1, n - cpu0[1])
        return {
            f"e2e_{workload}": (count - 1) / max(1e-6, final - first),
            f"cpu_{workload}": 1000 * (cpu1 - cpu0[0]) / jobs_in_window,
            f"redis_cpu_{workload}": 1000 * (redis1 - cpu0[2]) / jobs_in_window,
            f"rss_{workload}": peak_rss / 2**20,
            f"pss_{workload}": peak_pss / 2**20,
        }

    # -- 2. bulk ---------------------------------------------------------------------------------
    def bulk(self, config: Config) -> Sample:
        n = self.plan.jobs
        with self.session(config, "bulk") as client:
            seconds = client.call("bulk", workload="noop", n=n, wait=60 + n / 20)
        return {"bulk": n / seconds}

    # -- 3. idle CPU and pickup ------------------------------------------------------------------
    def pickup(self, config: Config) -> Sample:
        k = self.plan.pickup_samples
        with self.session(config, "pickup") as client:
            worker = self.start_worker(config, "noop", self.worker_spec(client, "noop"))
            try:
                client.call(
                    "pickup",
                    workload="noop",
                    samples=WARMUP,
                    pause=[0.02, 0.05],
                    timeout=STALL,
                    wait=STALL * WARMUP,
                )
                time.sleep(IDLE_SETTLE)
                cpu0, wall0 = procs.cpu_seconds(worker.pid), time.monotonic()
                time.sleep(IDLE_WINDOW)
                idle = (procs.cpu_seconds(worker.pid) - cpu0) / (time.monotonic() - wall0)
                pause = list(PICKUP_PAUSE)
                got = client.call(
                    "pickup", workload="noop", samples=k, pause=pause, timeout=30, wait=60 + 2 * k
                )
            finally:
                worker.stop()
        called = [1000 * (s - b) for s, b in zip(got["started"], got["before"], strict=True)]
        returned = [1000 * (s - a) for s, a in zip(got["started"], got["after"], strict=True)]
        p = statistics.quantiles(called, n=10, method="inclusive")
        r = statistics.quantiles(returned, n=10, method="inclusive")
        return {
            "pickup_p50": p[4],
            "pickup_p90": p[8],
            "pickup_ret_p50": r[4],
            "pickup_ret_p90": r[8],
            "idle_cpu": 100 * idle,
        }
