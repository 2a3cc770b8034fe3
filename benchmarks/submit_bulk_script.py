"""The Redis side of a bulk submit alone (issue 22 item 4): SUBMIT_BULK on prepared chunks.

Run from the repository root, against a private ``redis-server`` (its CPU time is read from
``/proc/<pid>/stat``, so nothing else should use it meanwhile)::

    .venv/bin/python benchmarks/submit_bulk_script.py --redis redis://127.0.0.1:6423/0 \\
        --pidfile /tmp/redis6423.pid --chunks 40

Chunks of ``--size`` no-op jobs are prepared and encoded first; each is then sent as one
``EVALSHA`` from a blocking client (hiredis), with a fresh gate, into a fresh namespace that is
dropped at the end. Printed per job: the Redis server's CPU time over all the chunks, and the
median and fastest ``EVALSHA`` wall time of one chunk. With ``PYTHONPATH`` pointing at another
checkout's ``src``, that checkout's script and encoder are measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from pathlib import Path

import redis
from backend_bench import build_app

from offload.backends.base import IDEMPOTENCY_WINDOW
from offload.backends.redis import bulk
from offload.backends.redis.scripts import script


def server_cpu(pidfile: Path) -> float:
    """User plus system CPU seconds of the Redis server so far."""
    pid = int(pidfile.read_text())
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis", default="redis://127.0.0.1:6423/0")
    p.add_argument("--pidfile", type=Path, default=Path("/tmp/redis6423.pid"))
    p.add_argument("--chunks", type=int, default=40)
    p.add_argument("--size", type=int, default=1000)
    args = p.parse_args(argv)
    app = build_app("memory://")
    client = redis.Redis.from_url(args.redis)
    sha = client.script_load(script("submit_bulk"))
    root = "{sbs" + uuid.uuid4().hex[:8] + "}:"
    chunks = []
    for _ in range(args.chunks):
        jobs = [app.prepare("noop") for _ in range(args.size)]
        chunks.append(bulk._rows(jobs, bulk._check(jobs)))
    walls = []
    cpu0 = server_cpu(args.pidfile)
    for rows in chunks:
        t0 = time.perf_counter()
        reply = client.evalsha(sha, 1, root, "", repr(IDEMPOTENCY_WINDOW), uuid.uuid4().hex, rows)
        walls.append((time.perf_counter() - t0) / args.size * 1e6)
        assert reply[1][0] == b"ok", reply[1][:2]
    cpu = (server_cpu(args.pidfile) - cpu0) / (args.chunks * args.size) * 1e6
    print(
        f"SUBMIT_BULK of {args.size}: Redis CPU {cpu:.1f} us/job; EVALSHA wall median "
        f"{statistics.median(walls):.1f} us/job, fastest {min(walls):.1f} us/job"
    )
    keys = list(client.scan_iter(match=root + "*", count=5000))
    for start in range(0, len(keys), 5000):
        client.unlink(*keys[start : start + 5000])


if __name__ == "__main__":
    main()
