"""Huey's side of pickup_bench.py: the task its consumer runs, and the sampling child.

HUEY_PYTHON pickup_huey.py REDIS_URL SAMPLES SEED   (run by pickup_bench.py, cwd benchmarks/)
"""

from __future__ import annotations

import os
import subprocess
import sys

from huey import RedisHuey
from pickup_common import PORT_ENV, listener, sample, stamp

huey = RedisHuey(
    "pickup", url=os.environ.get("PICKUP_REDIS", "redis://127.0.0.1:6379/0"), results=False
)


@huey.task(name="noop")  # type: ignore[misc, untyped-decorator, unused-ignore]
def noop() -> None:
    stamp()


def main() -> None:
    import pickup_huey as tasks  # the task as the consumer names it (not __main__.noop)

    url, samples, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = listener()
    env = {**os.environ, "PICKUP_REDIS": url, PORT_ENV: str(sock.getsockname()[1])}
    argv = [sys.executable, "-m", "huey.bin.huey_consumer", "pickup_huey.huey"]
    consumer = subprocess.Popen(
        [*argv, "-w", "10", "-k", "thread", "-q"], env=env, stdout=subprocess.DEVNULL
    )
    try:
        print(sample(tasks.noop, sock, samples, seed))
    finally:
        consumer.terminate()
        consumer.wait(30)
        tasks.huey.flush()


if __name__ == "__main__":
    main()
