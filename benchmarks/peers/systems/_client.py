"""The enqueue side of one system, driven by the harness: ``python -m systems._client CONFIG``.

It runs in the system's own virtual environment and reads one JSON request per line on stdin,
answering one JSON line on stdout (``{"ok": ...}`` or ``{"error": "..."}``). Requests:

- ``{"op": "describe"}``: versions of the system's packages, its knobs, whether it has bulk;
- ``{"op": "open", "env": {...}}``: set those environment variables, then connect;
- ``{"op": "worker", "workload": W, "concurrency": C}``: the worker's argv and extra env;
- ``{"op": "enqueue", "workload": W, "n": N}``: N jobs one at a time; answers the seconds;
- ``{"op": "timed_enqueue", "workload": W, "n": N}``: N jobs one at a time; answers the
  seconds, this process's CPU seconds, and the wall clock (``time.time()``) at the start;
- ``{"op": "scaled", "workload": W, "concurrency": C, "processes": P}``: the worker commands
  of the many-processes flow, by mode (``{}`` when the adapter has no ``scaled``);
- ``{"op": "bulk", "workload": W, "n": N}``: the same through the system's bulk enqueue;
- ``{"op": "pickup", "workload": W, "samples": K, "pause": [lo, hi], "timeout": T}``: K jobs
  one after the other on an idle worker; for each, the time before the enqueue call, after it
  returned, and when the task body started (popped from the counter database);
- ``{"op": "close"}``, ``{"op": "quit"}``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import random
import sys
import time
import traceback
from importlib import metadata
from types import ModuleType
from typing import Any

import redis.asyncio as aioredis

from systems import BY_NAME
from systems._shared import STARTED, counter_url


def versions(module: ModuleType) -> dict[str, str]:
    found = {}
    for name in module.PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["python"] = sys.version.split()[0]
    return found


class Driver:
    def __init__(self, config: str) -> None:
        self.config = config
        self.module = importlib.import_module(f"systems.{BY_NAME[config].module}")
        self.client: Any = None

    async def handle(self, req: dict[str, Any]) -> Any:
        op = req["op"]
        if op == "describe":
            return {
                "versions": versions(self.module),
                "knobs": self.module.knobs(self.config),
                "bulk": hasattr(self.module.Client, "bulk"),
            }
        if op == "worker":
            argv, env = self.module.worker(self.config, req["workload"], req["concurrency"])
            return {"argv": argv, "env": env}
        if op == "open":
            os.environ.update(req.get("env", {}))
            self.client = self.module.Client(self.config)
            await self.client.open()
            return None
        if op == "close":
            if self.client is not None:
                await self.client.close()
                self.client = None
            return None
        if op == "enqueue":
            started = time.perf_counter()
            for _ in range(req["n"]):
                await self.client.enqueue(req["workload"], 0.0)
            return time.perf_counter() - started
        if op == "timed_enqueue":
            return await self.timed_enqueue(req["workload"], req["n"])
        if op == "scaled":
            found = getattr(self.module, "scaled", None)
            if found is None:
                return {}
            return found(self.config, req["workload"], req["concurrency"], req["processes"])
        if op == "bulk":
            started = time.perf_counter()
            await self.client.bulk(req["workload"], req["n"])
            return time.perf_counter() - started
        if op == "pickup":
            return await self.pickup(req)
        raise ValueError(f"unknown request {op!r}")

    async def timed_enqueue(self, workload: str, n: int) -> dict[str, float]:
        """``n`` jobs one at a time, as a web app's request handlers submit them: the wall time
        it took, this process's CPU time for it, and the wall clock at the first call."""
        t0, wall0, cpu0 = time.time(), time.perf_counter(), time.process_time()
        for _ in range(n):
            await self.client.enqueue(workload, 0.0)
        cpu, seconds = time.process_time() - cpu0, time.perf_counter() - wall0
        return {"t0": t0, "seconds": seconds, "cpu": cpu}

    async def pickup(self, req: dict[str, Any]) -> dict[str, list[float]]:
        """One job at a time on an idle worker: wait for each to start before the next."""
        lo, hi = req["pause"]
        rng = random.Random()
        before, after, started = [], [], []
        counter = aioredis.Redis.from_url(counter_url())
        try:
            for _ in range(req["samples"]):
                t0 = time.time()
                await self.client.enqueue(req["workload"], t0)
                t1 = time.time()
                item = await counter.blpop([STARTED], timeout=req["timeout"])
                if item is None:
                    raise TimeoutError(f"a pickup job did not start within {req['timeout']} s")
                before.append(t0)
                after.append(t1)
                started.append(float(item[1]))
                await asyncio.sleep(rng.uniform(lo, hi))
        finally:
            await counter.aclose()
        return {"before": before, "after": after, "started": started}


async def serve(config: str) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever a system prints must not get into the answers
    driver = Driver(config)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        req = json.loads(line)
        if req["op"] == "quit":
            break
        try:
            answer: dict[str, Any] = {"ok": await driver.handle(req)}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    if driver.client is not None:
        await driver.client.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
