"""Redis's own work per job (issue 22 item 2): submit, claim and finish, from the server's side.

Run from the repository root, on a Redis of your own (``INFO`` counts the whole server)::

    redis-server --port 6414 --save '' --appendonly no --daemonize yes
    .venv/bin/python benchmarks/redis_work.py --redis redis://127.0.0.1:6414/0 --jobs 5000

On a private namespace (a fresh key prefix): ``--jobs`` one-at-a-time ``task.submit`` calls
(sync, what an endpoint does), then one ``claim`` of one job at a time and one ``complete`` per
job through the backend (a worker that is handed one job at a time, the web flow's case), then
``--jobs`` more submits while a real worker process drains them (the whole flow: the worker's
waits, renewals and heartbeats counted too). For each phase: Redis CPU per job (the server's
``used_cpu_user + used_cpu_sys`` delta over the jobs), Redis time per script call (``INFO
commandstats``: time inside the command, Lua and the calls it makes) and, for the submits,
client CPU per submit (``time.process_time``). The namespace is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import redis
from backend_bench import build_app, running_worker, task_of

from offload.backends.redis import RedisBackend
from offload.core.job import Lease

Stats = tuple[float, dict[str, tuple[int, int]]]  # server CPU seconds, command -> (calls, usec)
Phase = tuple[float, float, float]  # Redis CPU us/job, script us/call, Redis commands per job


def server_stats(client: redis.Redis) -> Stats:
    cpu = client.info("cpu")
    commands = {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in client.info("commandstats").items()
    }
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), commands


def delta(n: int, before: Stats, after: Stats) -> tuple[Phase, dict[str, tuple[int, int]]]:
    """Per job: the server's CPU, the time of each script call, the commands scripts ran."""
    diff = {}
    for name, (calls, usec) in after[1].items():
        c0, u0 = before[1].get(name, (0, 0))
        if calls > c0 and name != "info":
            diff[name] = (calls - c0, usec - u0)
    outer = ("evalsha", "fcall")  # the script calls themselves (EVALSHA, or FCALL on Redis 7)
    scripts = tuple(map(sum, zip(*(diff.get(name, (0, 0)) for name in outer), strict=True)))
    inner = sum(c for name, (c, _) in diff.items() if name not in (*outer, "hello"))
    per_call = scripts[1] / scripts[0] if scripts[0] else 0.0
    return ((after[0] - before[0]) / n * 1e6, per_call, inner / n), diff


def report(label: str, n: int, before: Stats, after: Stats, extra: str = "") -> None:
    (cpu, per_call, inner), diff = delta(n, before, after)
    print(
        f"{label}: Redis CPU {cpu:.1f} us/job, script {per_call:.1f} us/call, "
        f"{inner:.1f} commands/job{extra}",
        flush=True,
    )
    for name, (calls, usec) in sorted(diff.items()):
        print(f"    {name} {calls} calls {usec / calls:.1f} us/call {usec / n:.1f} us/job")


def submits(app_url: str, n: int) -> float:
    app = build_app(app_url)
    task = task_of(app, "noop")
    task.submit()  # connections up before the clock starts
    c0 = time.process_time()
    for _ in range(n):
        task.submit()
    cpu = (time.process_time() - c0) / n * 1000
    app.close()
    return cpu


async def phases(url: str, client: redis.Redis, n: int) -> dict[str, Phase]:
    """One round: n sync submits, n claims of one job, n completes; each phase's figures."""
    out: dict[str, Phase] = {}
    before = server_stats(client)
    cpu = await asyncio.to_thread(submits, url, n)
    out["submit"] = delta(n + 1, before, server_stats(client))[0]
    out["client CPU ms/submit"] = (cpu, 0.0, 0.0)
    backend = RedisBackend.from_url(url)
    await backend.open()
    try:
        leases = []
        before = server_stats(client)
        for _ in range(n + 1):
            jobs = await backend.claim("bench-worker", {"default": 1}, 1, 60.0)
            leases.extend(Lease(j.id, j.token) for j in jobs)
        out["claim"] = delta(len(leases), before, server_stats(client))[0]
        before = server_stats(client)
        for lease in leases:
            await backend.complete(lease, None)
        out["finish"] = delta(len(leases), before, server_stats(client))[0]
    finally:
        await backend.close()
    return out


async def flow(url: str, client: redis.Redis, n: int, log: Path) -> None:
    before = server_stats(client)
    async with running_worker(url, log, None):
        cpu = await asyncio.to_thread(submits, url, n)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # drained: every job ended
            counts = client.hgetall(url.rsplit("prefix=", 1)[1] + ":counts")
            live = sum(
                int(v) for k, v in counts.items() if not k.endswith((b"succeeded", b"failed"))
            )
            if live == 0:
                break
            await asyncio.sleep(0.05)
    report(
        "flow (submits while 1 worker drains)",
        n + 1,
        before,
        server_stats(client),
        f", client CPU {cpu:.3f} ms/submit",
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis", default="redis://127.0.0.1:6414/0")
    p.add_argument("--jobs", type=int, default=1000, help="jobs per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--flow-jobs", type=int, default=3000, help="0: skip the flow with a worker")
    args = p.parse_args()
    client = redis.Redis.from_url(args.redis)
    prefix = f"rw{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in args.redis else "?"
    url = f"{args.redis}{sep}prefix={prefix}"
    try:
        rounds = [asyncio.run(phases(url, client, args.jobs)) for _ in range(args.rounds)]
        print(f"{args.rounds} rounds of {args.jobs} jobs: min / median per phase")
        for name in rounds[0]:
            cols = list(zip(*(r[name] for r in rounds), strict=True))
            if name.startswith("client"):
                print(f"  {name}: {min(cols[0]):.3f} / {statistics.median(cols[0]):.3f}")
                continue
            print(
                f"  {name}: Redis CPU {min(cols[0]):.1f} / "
                f"{statistics.median(cols[0]):.1f} us/job, "
                f"script {min(cols[1]):.1f} / {statistics.median(cols[1]):.1f} us/call, "
                f"{statistics.median(cols[2]):.1f} commands/job"
            )
        total = [sum(r[k][0] for k in ("submit", "claim", "finish")) for r in rounds]
        print(f"  total Redis CPU per job: {min(total):.1f} / {statistics.median(total):.1f} us")
        if args.flow_jobs:
            log = Path(tempfile.mkdtemp(prefix="redis-work-")) / "worker.log"
            asyncio.run(flow(url, client, args.flow_jobs, log))
    finally:
        for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000):  # the root
            client.unlink(key)


if __name__ == "__main__":
    main()
