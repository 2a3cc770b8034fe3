"""Soak: a sustained submit rate for N minutes, sampling what finished jobs cost over time.

Starts one real worker (``python -m offload worker backend_bench:app``) with a short retention
(``--retain`` seconds for succeeded jobs, pruned every ``--prune-interval``), submits no-op
jobs at ``--rate`` per second for ``--minutes``, and every ``--every`` seconds samples Redis
memory (``INFO memory`` of a private redis-server it starts, so other users of a shared
server do not show), the SQLite file size (with its -wal), the worker's RSS, jobs stored and
throughput. Writes ``<out>.csv`` and ``<out>.png`` (matplotlib: ``pip install offload[bench]``).
Run from the repository root::

    .venv/bin/python benchmarks/soak.py --backend redis --rate 300 --minutes 5 --retain 60
    .venv/bin/python benchmarks/soak.py --backend sqlite --rate 300 --minutes 5 --retain 60
"""

from __future__ import annotations

import argparse
import asyncio
import csv
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
    "done_per_s",
    "stored",
    "finished",
    "redis_mb",
    "sqlite_mb",
    "worker_rss_mb",
]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, MiB (from /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS"))
        todo += [int(k) for k in kids]
    return total / 1024


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


def sample(ns: argparse.Namespace, url: str, db: Path, pid: int) -> tuple[float, float, float]:
    redis_mb = sqlite_mb = 0.0
    if ns.backend == "redis":
        info = redis.Redis(port=ns.redis_port).info("memory")
        redis_mb = int(info["used_memory"]) / 2**20
    else:
        sqlite_mb = sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 2**20
    return redis_mb, sqlite_mb, rss_mb(pid)


async def soak(ns: argparse.Namespace, url: str, db: Path, out: Path) -> None:
    env = {
        **os.environ,
        "OFFLOAD_BACKEND": url,
        "OFFLOAD_RETAIN_SUCCEEDED": str(ns.retain),
        "OFFLOAD_PRUNE_INTERVAL": str(ns.prune_interval),
        "OFFLOAD_LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measured loop
        [sys.executable, "-m", "offload", "worker", "backend_bench:app"],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=sys.stderr,
    )
    app = offload.App(url)
    app.task(name="noop")(_noop)
    rows: list[dict[str, float]] = []
    try:
        start = time.monotonic()
        submitted, last_done, last_t, next_sample = 0, 0, start, start
        tick = 0.1
        while (now := time.monotonic()) < start + ns.minutes * 60:
            due = int((now - start) * ns.rate) - submitted
            if due > 0:
                await app.asubmit_many([app.prepare("noop") for _ in range(due)])
                submitted += due
            if now >= next_sample:
                next_sample += ns.every
                stats = await (await app.backend()).stats()
                stored = sum(sum(s.counts.values()) for s in stats)
                finished = sum(s.count(State.SUCCEEDED) for s in stats)
                done = sum(w.processed for w in await (await app.backend()).workers())
                rate = (done - last_done) / max(now - last_t, 1e-9)
                last_done, last_t = done, now
                redis_mb, sqlite_mb, rss = sample(ns, url, db, worker.pid)
                row = dict(
                    zip(
                        FIELDS,
                        [
                            round(now - start, 1),
                            submitted,
                            round(rate, 1),
                            stored,
                            finished,
                            round(redis_mb, 2),
                            round(sqlite_mb, 2),
                            round(rss, 1),
                        ],
                        strict=True,
                    )
                )
                rows.append(row)
                print(row, flush=True)
            await asyncio.sleep(tick)
    finally:
        worker.terminate()
        worker.wait(30)
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
        ("done_per_s", "jobs done per second"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 9), sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.plot(t, [r[key] for r in rows])
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.axvline(ns.retain / 60, color="grey", linestyle=":", linewidth=1)
    axes[-1].set_xlabel("minutes (dotted: the retention of succeeded jobs)")
    fig.suptitle(f"soak: {ns.backend}, {ns.rate:g} jobs/s, succeeded kept {ns.retain:g} s")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=80)


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
    ns = parser.parse_args()
    out = Path(ns.out or f"docs/img/soak-{ns.backend}")
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "soak.db"
        server = start_redis(ns.redis_port, Path(folder)) if ns.backend == "redis" else None
        url = f"redis://127.0.0.1:{ns.redis_port}/0" if server else f"sqlite:///{db}"
        try:
            asyncio.run(soak(ns, url, db, out))
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    main()
