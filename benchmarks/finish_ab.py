"""The FINISH script alone, two versions side by side on one server (issue 22 item 2).

Run from the repository root, on a Redis of your own (``INFO`` counts the whole server)::

    git archive main src | tar -x -C /tmp/finish-before
    .venv/bin/python benchmarks/finish_ab.py --redis redis://127.0.0.1:6426/0 \\
        --before /tmp/finish-before/src --blocks 20 --size 100

Loads the FINISH of the ``src`` tree at ``--before`` next to this tree's (its Functions library,
and its EVALSHA script), submits and claims ``blocks * size`` jobs, then completes them
``size`` at a time, each block with one version, in the order ABBA ABBA... (the two see the
same load), timing each block by ``INFO commandstats`` (server time inside FCALL or EVALSHA).
Prints, for FCALL and for EVALSHA: each version's median and minimum per call, the median of
the paired differences (after - before), and Redis commands per call. On a shared machine this
resolves a few microseconds where whole-phase runs (redis_work.py) move by tens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid

import redis

from offload.backends.redis import RedisBackend, conn, scripts
from offload.core.job import Lease, NewJob

_BEFORE = """
import json
from offload.backends.redis import scripts as s
print(json.dumps({"lib": s.LIBRARY, "fn": s.FUNCTIONS["finish"], "script": s.script("finish")}))
"""


def server_time(client: redis.Redis, cmd: str) -> tuple[int, int, int]:
    """Calls and usec of ``cmd``, and the calls of every other command but INFO."""
    stats = client.info("commandstats")
    own = stats.get(f"cmdstat_{cmd}", {"calls": 0, "usec": 0})
    others = sum(
        v["calls"] for k, v in stats.items() if k not in (f"cmdstat_{cmd}", "cmdstat_info")
    )
    return int(own["calls"]), int(own["usec"]), others


async def compare(
    url: str, client: redis.Redis, before: dict[str, str], functions: bool, blocks: int, size: int
) -> str:
    cmd = "fcall" if functions else "evalsha"
    backend = RedisBackend(f"{url}?prefix=finish-ab-{uuid.uuid4().hex[:8]}", functions=functions)
    await backend.open()
    shas = {
        "before": client.script_load(before["script"]),
        "after": client.script_load(scripts.script("finish")),
    }
    names = {"before": before["fn"], "after": scripts.FUNCTIONS["finish"]}
    n, ms = blocks * size, int(time.time() * 1000)
    jobs = [
        NewJob(id=f"{ms:012x}{uuid.uuid4().hex[:20]}", task="bench.t", args=[i], kwargs={})
        for i in range(n)
    ]
    for i in range(0, n, 500):
        await backend.submit(jobs[i : i + 500])
    leases: list[Lease] = []
    while len(leases) < n:
        got = await backend.claim("bench-worker", {"default": 100}, 100, 600.0)
        leases += [Lease(r.id, r.token) for r in got]
    per_call: dict[str, list[float]] = {"before": [], "after": []}
    commands: dict[str, list[float]] = {"before": [], "after": []}
    try:
        for k in range(blocks):
            side = ("before", "after")[(k + k // 2) % 2]  # ABBA
            if functions:
                conn.FUNCTIONS["finish"] = names[side]
            else:
                backend._scripts._shas["finish"] = shas[side]
            c0, u0, o0 = server_time(client, cmd)
            for lease in leases[k * size : (k + 1) * size]:
                await backend.complete(lease, None)
            c1, u1, o1 = server_time(client, cmd)
            per_call[side].append((u1 - u0) / (c1 - c0))
            commands[side].append((o1 - o0) / (c1 - c0))
    finally:
        conn.FUNCTIONS["finish"] = names["after"]
        await backend.close()
    b, a = per_call["before"], per_call["after"]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    return (
        f"{cmd}: FINISH us/call median before {statistics.median(b):.1f} after "
        f"{statistics.median(a):.1f}; min {min(b):.1f} -> {min(a):.1f}; median(after - before) "
        f"{statistics.median(diffs):+.1f}, after lower in {sum(d < 0 for d in diffs)}/{len(diffs)}"
        f" pairs; commands/call {statistics.median(commands['before']):.1f} -> "
        f"{statistics.median(commands['after']):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", required=True, help="a Redis of your own (db URL)")
    parser.add_argument("--before", required=True, help="the src/ of the version to compare")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    out = subprocess.check_output([sys.executable, "-c", _BEFORE], env={"PYTHONPATH": args.before})
    before = json.loads(out)
    client = redis.Redis.from_url(args.redis)
    try:
        client.function_load(before["lib"])
    except redis.ResponseError as exc:
        if "already exists" not in str(exc):
            raise
    for functions in (True, False):
        print(asyncio.run(compare(args.redis, client, before, functions, args.blocks, args.size)))
    client.close()


if __name__ == "__main__":
    main()
