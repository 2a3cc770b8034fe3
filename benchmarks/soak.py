"""Soak: a sustained submit rate for N minutes, sampling what finished jobs cost over time.

Starts real workers (``python -m offload worker backend_bench:app``, ``--processes`` of them)
with a short retention (``--retain`` seconds for succeeded jobs, pruned every
``--prune-interval``), submits no-op jobs at ``--rate`` per second for ``--minutes`` (every
``--tick`` the jobs due since the start, in ``asubmit_many`` calls of up to 1,000), and every
``--every`` seconds samples Redis memory (``INFO memory`` of a private redis-server it starts,
so other users of a shared server do not show), the SQLite file size (with its -wal), the
workers' RSS and CPU, jobs stored, the submit and done rates and how far the producer is
behind. Writes ``<out>.csv`` and ``<out>.png`` (matplotlib: ``pip install offload[bench]``).
``--tracemalloc DIR`` runs the (one) worker under tracemalloc, dumps a snapshot every
``--snapshot-every`` seconds and prints what grew. Run from the repository root::

    .venv/bin/python benchmarks/soak.py --backend redis --rate 2000 --minutes 10 --retain 60 \
        --processes 2 --concurrency 20 --max-finished 0
    .venv/bin/python benchmarks/soak.py --backend sqlite --rate 1000 --minutes 6 --retain 60
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

import offload
from offload.core.states import State

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
FIELDS = [
    "seconds",
    "submitted",
    "behind",
    "submit_per_s",
    "done_per_s",
    "stored",
    "finished",
    "redis_mb",
    "sqlite_mb",
    "worker_rss_mb",
    "worker_cpu",
    "producer_cpu",
    "redis_cpu",
    "load1",
]
CHUNK = 1000  # jobs per asubmit_many call: one round trip (Redis) or transaction (SQLite)

#: Run as the worker's ``python -c`` when ``--tracemalloc`` is given: a daemon thread dumps a
#: tracemalloc snapshot every N seconds into a folder, then the usual worker CLI runs.
TRACED_WORKER = """
import sys, threading, time, tracemalloc
every, folder = float(sys.argv[1]), sys.argv[2]
sys.argv = ["offload", *sys.argv[3:]]
tracemalloc.start(int(__import__("os").environ.get("SOAK_FRAMES", "8")))
def dump():
    n = 0
    while True:
        time.sleep(every)
        tracemalloc.take_snapshot().dump(f"{folder}/snap-{n:03d}.bin")
        n += 1
threading.Thread(target=dump, daemon=True).start()
from offload.cli import main
sys.exit(main())
"""


def tree(pid: int) -> tuple[float, float]:
    """Resident memory (MiB) and CPU seconds so far of a process and its children (/proc)."""
    rss, cpu, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        rss += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS"))
        cpu += int(stat[11]) + int(stat[12])  # utime + stime, in clock ticks
        todo += [int(k) for k in kids]
    return rss / 1024, cpu / os.sysconf("SC_CLK_TCK")


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
        "--maxmemory",
        "1gb",
        "--maxmemory-policy",
        "noeviction",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def storage_mb(ns: argparse.Namespace, db: Path) -> tuple[float, float]:
    """Redis used_memory or the SQLite file with its WAL, MiB."""
    if ns.backend == "redis":
        info = redis.Redis(port=ns.redis_port).info("memory")
        return int(info["used_memory"]) / 2**20, 0.0
    return 0.0, sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 2**20


def start_worker(ns: argparse.Namespace, url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "OFFLOAD_BACKEND": url,
        "OFFLOAD_RETAIN_SUCCEEDED": str(ns.retain),
        "OFFLOAD_PRUNE_INTERVAL": str(ns.prune_interval),
        "OFFLOAD_LOG_LEVEL": "WARNING",
    }
    if ns.max_finished is not None:
        env["OFFLOAD_MAX_FINISHED"] = str(ns.max_finished)
    cli = ["worker", "backend_bench:app", "--processes", str(ns.processes)]
    cli += ["--concurrency", str(ns.concurrency)]
    if ns.tracemalloc:
        folder = Path(ns.tracemalloc).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-c", TRACED_WORKER, str(ns.snapshot_every), str(folder), *cli]
    else:
        argv = [sys.executable, "-m", "offload", *cli]
    return subprocess.Popen(argv, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)


class Producer:
    """Submits ``rate`` jobs per second: every ``tick`` the jobs due since the start, in
    ``asubmit_many`` calls of up to CHUNK jobs; ``behind`` is how many are due but not sent."""

    def __init__(self, app: offload.App, rate: float, tick: float) -> None:
        self.app, self.rate, self.tick = app, rate, tick
        self.submitted = 0
        self.start = time.monotonic()

    def behind(self) -> int:
        return int((time.monotonic() - self.start) * self.rate) - self.submitted

    async def run(self, seconds: float) -> None:
        ticks = 0
        while time.monotonic() < self.start + seconds:
            due = self.behind()
            while due > 0:
                n = min(due, CHUNK)
                await self.app.asubmit_many([self.app.prepare("noop") for _ in range(n)])
                self.submitted += n
                due -= n
            ticks += 1
            await asyncio.sleep(max(0.0, self.start + ticks * self.tick - time.monotonic()))


async def sample_loop(
    ns: argparse.Namespace, producer: Producer, db: Path, pid: int
) -> list[dict[str, float]]:
    """A row every ``ns.every`` seconds until the run's end."""
    app, rows = producer.app, list[dict[str, float]]()
    last_done, last_sent, last_t = 0, 0, producer.start
    last_cpu, last_own = tree(pid)[1], time.process_time()
    last_server = tree(ns.server_pid)[1] if ns.server_pid else 0.0
    for k in itertools.count(1):
        at = producer.start + k * ns.every
        if at > producer.start + ns.minutes * 60 + 1e-6:
            return rows
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        backend = await app.backend()
        stats = await backend.stats()
        done = sum(w.processed for w in await backend.workers())
        now, sent, own = time.monotonic(), producer.submitted, time.process_time()
        (redis_mb, sqlite_mb), (rss, cpu) = storage_mb(ns, db), tree(pid)
        server = tree(ns.server_pid)[1] if ns.server_pid else 0.0
        values = [
            round(now - producer.start, 1),
            sent,
            producer.behind(),
            round((sent - last_sent) / (now - last_t), 1),
            round((done - last_done) / (now - last_t), 1),
            sum(sum(s.counts.values()) for s in stats),
            sum(s.count(State.SUCCEEDED) for s in stats),
            round(redis_mb, 2),
            round(sqlite_mb, 2),
            round(rss, 1),
            round(100 * (cpu - last_cpu) / (now - last_t), 1),
            round(100 * (own - last_own) / (now - last_t), 1),
            round(100 * (server - last_server) / (now - last_t), 1),
            os.getloadavg()[0],
        ]
        last_done, last_sent, last_t, last_cpu, last_own = done, sent, now, cpu, own
        last_server = server
        rows.append(dict(zip(FIELDS, values, strict=True)))
        print(rows[-1], flush=True)
    return rows


async def soak(ns: argparse.Namespace, url: str, db: Path, out: Path) -> None:
    worker = start_worker(ns, url)
    app = offload.App(url)
    app.task(name="noop")(_noop)
    try:
        await (await app.backend()).stats()  # connect before the clock starts
        producer = Producer(app, ns.rate, ns.tick)
        sampler = asyncio.create_task(sample_loop(ns, producer, db, worker.pid))
        await producer.run(ns.minutes * 60)
        rows = await sampler
    finally:
        worker.terminate()
        worker.wait(60)
        await app.aclose()
    write(rows, out, ns)


async def _noop() -> None:
    """The no-op the worker runs (backend_bench:app registers the same name)."""


def write(rows: list[dict[str, float]], out: Path, ns: argparse.Namespace) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["seconds"] / 60 for r in rows]
    store = "redis_mb" if ns.backend == "redis" else "sqlite_mb"
    label = "Redis used_memory (MiB)" if ns.backend == "redis" else "SQLite file + WAL (MiB)"
    panels = [
        (store, label),
        ("worker_rss_mb", "worker RSS (MiB)"),
        ("stored", "jobs stored"),
        ("done_per_s", "jobs per second (done; dashed: submitted)"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 9), sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.plot(t, [r[key] for r in rows])
        if key == "done_per_s":
            ax.plot(t, [r["submit_per_s"] for r in rows], linestyle="--", linewidth=1)
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.axvline(ns.retain / 60, color="grey", linestyle=":", linewidth=1)
    axes[-1].set_xlabel("minutes (dotted: the retention of succeeded jobs)")
    procs = f"{ns.processes} worker process{'es' if ns.processes > 1 else ''}"
    cap = "" if ns.max_finished is None else f", max_finished {ns.max_finished or 'off'}"
    fig.suptitle(
        f"soak: {ns.backend}, {ns.rate:g} jobs/s, {procs}, succeeded kept {ns.retain:g} s{cap}"
    )
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=80)


def compare_snapshots(folder: Path, skip: float, every: float) -> None:
    """Print the traced total of each snapshot, then what grew most from the first snapshot
    past ``skip`` seconds (the retention window: the stores are full) to the last."""
    import tracemalloc

    paths = sorted(folder.glob("snap-*.bin"))
    if not paths:
        return
    snaps = [tracemalloc.Snapshot.load(str(p)) for p in paths]
    for k, snap in enumerate(snaps):
        total = sum(stat.size for stat in snap.statistics("filename"))
        print(f"snapshot at {(k + 1) * every:5.0f} s: {total / 2**20:7.2f} MiB traced")
    first = min(int(skip // every), len(snaps) - 1)
    print(f"grew most from {(first + 1) * every:.0f} s to {len(snaps) * every:.0f} s:")
    for stat in snaps[-1].compare_to(snaps[first], "lineno")[:12]:
        print(f"  {stat}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["redis", "sqlite"], default="redis")
    parser.add_argument("--rate", type=float, default=300.0, help="jobs submitted per second")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--retain", type=float, default=60.0, help="seconds succeeded jobs kept")
    parser.add_argument("--prune-interval", type=float, default=5.0)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--redis-port", type=int, default=6391)
    parser.add_argument("--out", default=None, help="CSV/PNG path without suffix")
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=10, help="slots per process")
    parser.add_argument("--tick", type=float, default=0.1, help="seconds between submit batches")
    parser.add_argument(
        "--tracemalloc", default=None, help="folder: the worker (one process) dumps snapshots"
    )
    parser.add_argument("--snapshot-every", type=float, default=60.0)
    parser.add_argument(
        "--max-finished", type=int, default=None, help="OFFLOAD_MAX_FINISHED (0: no count cap)"
    )
    ns = parser.parse_args()
    out = Path(ns.out or f"docs/img/soak-{ns.backend}")
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "soak.db"
        server = start_redis(ns.redis_port, Path(folder)) if ns.backend == "redis" else None
        url = f"redis://127.0.0.1:{ns.redis_port}/0" if server else f"sqlite:///{db}"
        ns.server_pid = server.pid if server else None
        try:
            asyncio.run(soak(ns, url, db, out))
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
    if ns.tracemalloc:
        compare_snapshots(Path(ns.tracemalloc), ns.retain + 60, ns.snapshot_every)


if __name__ == "__main__":
    main()
