"""Redis memory per finished no-op job by finishing rate and bucket width (issue 21).

    .venv/bin/python benchmarks/bucket_size.py [-n 2000] [--widths 1,10,60]
        [--rates 1000,100,10,1,0.1] [--redis-url redis://127.0.0.1:6379/14]

Ended jobs share one hash per BUCKET_SECONDS of creation time, so a bucket's own cost (its
key, its entries in fb and fe or ff:<status>) is shared by the jobs created in the same
bucket: fewer at a low rate. For each width and rate, N no-op jobs (the default result_ttl)
are submitted one at a time on a manual clock advanced 1 / rate seconds between them (ids
from the same clock, as in production), drained, and the MEMORY USAGE (SAMPLES 0) of the
namespace is divided by N.
The width is a constant of offload.backends.redis.scripts: this script patches it.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

import redis

from offload.backends.redis import RedisBackend, ended, scripts
from offload.core.clock import ManualClock
from offload.core.ids import new_job_id
from offload.core.job import Lease, NewJob
from offload.settings import Settings


def set_width(width: int) -> None:
    scripts.BUCKET_SECONDS = width
    scripts.VALUES["BUCKET_SECONDS"] = str(width)
    scripts.PRELUDE = scripts.load("prelude")
    ended.BUCKET_SECONDS = width


async def fill(backend: RedisBackend, clock: ManualClock, n: int, rate: float) -> None:
    await backend.open()
    try:
        for _ in range(n):
            ttl = Settings().result_ttl
            job = NewJob(
                id=new_job_id(clock.now()), task="noop", args=[], kwargs={}, result_ttl=ttl
            )
            await backend.submit([job])
            [claimed] = await backend.claim("worker-1234-0123456789ab", {"default": 1}, 1, 60.0)
            await backend.complete(Lease(claimed.id, claimed.token), None)
            clock.advance(1 / rate)
    finally:
        await backend.close()


def measure(url: str, n: int, width: int, rate: float) -> float:
    set_width(width)
    prefix = f"ofl{uuid.uuid4().hex[:4]}"
    root = "{" + prefix + "}:"
    client = redis.Redis.from_url(url, decode_responses=True)
    clock = ManualClock(1_796_000_000.0)
    try:
        asyncio.run(fill(RedisBackend(f"{url}?prefix={prefix}", clock=clock), clock, n, rate))
        keys = list(client.scan_iter(match=root + "*", count=5000))
        return sum(int(client.memory_usage(k, samples=0) or 0) for k in keys) / n
    finally:
        keys = list(client.scan_iter(match=root + "*", count=5000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--widths", default="1,10,60")
    parser.add_argument("--rates", default="1000,100,10,1,0.1")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    print("bytes per finished no-op job; columns: jobs/s finishing")
    print("width  " + "".join(f"{r:>9g}" for r in rates))
    for width in (int(w) for w in args.widths.split(",")):
        row = [measure(args.redis_url, args.n, width, rate) for rate in rates]
        print(f"{width:>4} s " + "".join(f"{b:>9.0f}" for b in row))


if __name__ == "__main__":
    main()
