"""Where a PostgreSQL drain's time goes: backend_bench's ``e2e_async`` with instruments.

A queue pre-filled with N async no-ops (one ``asubmit_many`` per 1,000), one worker process
(``python -m offload worker backend_bench:app``, 10 slots) drains it; jobs/s = N / (last
finish - first start), as ``backend_bench.py --backend postgres`` measures it. Besides the
rate it prints the worker's CPU, the CPU of the server processes serving the worker's
connections (found by their ``application_name``), and the transactions committed in the
run's own database per job (``pg_stat_database``). With ``--count`` the worker counts its
statements by kind (a ``sitecustomize`` that wraps psycopg's async cursor; slower, so not for
the rate); with ``--trace`` it times each of the worker's claims (latency, jobs, the pause
before the next, the share of the drain with a claim in flight); with ``--pyspy PATH`` a
py-spy binary samples the worker (``--native``), and the hottest frames are printed. Run from
the repository root::

    .venv/bin/python benchmarks/postgres_drain.py --jobs 3000 --runs 3
    .venv/bin/python benchmarks/postgres_drain.py --jobs 3000 --runs 1 --count
    .venv/bin/python benchmarks/postgres_drain.py --jobs 3000 --runs 1 --trace
    .venv/bin/python benchmarks/postgres_drain.py --jobs 10000 --pyspy /tmp/pyspy/bin/py-spy

It works in a database of its own (``offload_drain_<random>``), dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backend_bench as bb

COUNTER = r"""
import atexit, collections, json, os, re, psycopg
_counts = collections.Counter()
_orig = psycopg.AsyncCursor.execute
def _kind(sql):
    text = sql if isinstance(sql, str) else str(sql)
    return re.sub(r'"[a-z0-9_]+"\.', "", " ".join(text.split()[:7]))[:70]
async def execute(self, query, params=None, **kw):
    _counts[_kind(query)] += 1
    return await _orig(self, query, params, **kw)
psycopg.AsyncCursor.execute = execute
_oc, _orb = psycopg.AsyncConnection.commit, psycopg.AsyncConnection.rollback
async def commit(self):
    _counts["<commit>"] += 1
    return await _oc(self)
psycopg.AsyncConnection.commit = commit
@atexit.register
def _dump():
    with open(os.environ["DRAIN_COUNTS"], "w") as f:
        json.dump(dict(_counts), f)
"""


TRACER = r"""
import atexit, json, os, time
from offload.backends.postgres import backend as _backend
_claims = []
_claim = _backend.PostgresBackend.claim
async def claim(self, *args, **kw):
    began = time.perf_counter()
    jobs = await _claim(self, *args, **kw)
    if jobs:
        _claims.append((began, time.perf_counter(), len(jobs)))
    return jobs
_backend.PostgresBackend.claim = claim
@atexit.register
def _dump():
    with open(os.environ["DRAIN_TRACE"], "w") as f:
        json.dump(_claims, f)
"""


def claim_chain(path: Path) -> None:
    """How the drain's claims followed each other: latency, jobs each, the pause before the
    next one, and the share of the drain with a claim in flight."""
    claims = sorted(json.loads(path.read_text()))
    if len(claims) < 2:
        return
    took = sorted(1e3 * (end - began) for began, end, _ in claims)
    gaps = sorted(1e3 * (b[0] - a[1]) for a, b in itertools.pairwise(claims))
    span = claims[-1][1] - claims[0][0]
    busy = sum(end - began for began, end, _ in claims) / span

    def q(v: list[float], f: float) -> str:
        return f"{v[int(f * (len(v) - 1))]:.2f}"

    print(
        f"  claims {len(claims)}, {statistics.mean(c[2] for c in claims):.1f} jobs each; "
        f"latency ms p10/p50/p90 {q(took, 0.1)}/{q(took, 0.5)}/{q(took, 0.9)}; next claim "
        f"after ms p50 {q(gaps, 0.5)}; a claim in flight {100 * busy:.0f}% of the drain"
    )


SPY = ("record", "-r", "100", "-f", "raw")  # py-spy: 100 samples/s, collapsed stacks


def db_url(base: str, name: str, query: str = "") -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", query, ""))


def server_cpu(conn: psycopg.Connection[tuple[object, ...]], app_name: str) -> float:
    """CPU seconds used so far by the server processes whose application_name is ``app_name``
    (a process gone meanwhile is not counted: the pool keeps its connections)."""
    pids = [
        r[0]
        for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app_name,)
        )
    ]
    total = 0.0
    for pid in pids:
        try:
            total += bb.cpu_seconds(int(str(pid)))
        except OSError:
            pass
    return total


def commits(conn: psycopg.Connection[tuple[object, ...]], db: str) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (db,)
    ).fetchone()
    return int(str(row[0])) if row else 0


async def one_run(base: str, db: str, n: int, opts: argparse.Namespace) -> dict[str, float]:
    schema = f"drain_{uuid.uuid4().hex[:8]}"
    worker_name = f"drainw_{uuid.uuid4().hex[:8]}"
    extra = f"&{opts.options}" if opts.options else ""
    url = db_url(base, db, f"schema={schema}{extra}")
    worker_url = db_url(base, db, f"schema={schema}&application_name={worker_name}{extra}")
    env_before = dict(os.environ)
    counts_file = trace_file = None
    site = None
    if opts.count or opts.trace:
        site = tempfile.mkdtemp(prefix="drain-site-")
        with open(os.path.join(site, "sitecustomize.py"), "w") as f:  # noqa: ASYNC230
            f.write((COUNTER if opts.count else "") + (TRACER if opts.trace else ""))
        counts_file, trace_file = Path(site, "counts.json"), Path(site, "trace.json")
        os.environ["PYTHONPATH"] = site + os.pathsep + os.environ.get("PYTHONPATH", "")
        os.environ["DRAIN_COUNTS"] = str(counts_file)
        os.environ["DRAIN_TRACE"] = str(trace_file)
    app = bb.build_app(url)
    spy = None
    try:
        await bb.submit_bulk(app, "noop", n)
        with psycopg.connect(db_url(base, db), autocommit=True) as admin:
            log = Path(tempfile.gettempdir()) / f"{worker_name}.log"
            async with bb.running_worker(worker_url, log, opts.concurrency) as proc:
                c0 = commits(admin, db)
                cpu0, wall0 = bb.cpu_seconds(proc.pid), time.monotonic()
                s0 = server_cpu(admin, worker_name)
                if opts.pyspy:
                    raw = Path(tempfile.gettempdir()) / f"{worker_name}.txt"
                    spy = (
                        subprocess.Popen(  # noqa: ASYNC220
                            [opts.pyspy, *SPY, "-o", str(raw), "--pid", str(proc.pid)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        ),
                        raw,
                    )
                deadline = wall0 + 60 + n / 100
                while True:
                    ok, bad = await bb.counts(app)
                    if ok + bad >= n or time.monotonic() > deadline:
                        break
                    s1 = server_cpu(admin, worker_name)  # before the pool may shrink
                    await asyncio.sleep(bb.STATS_POLL)
                wall = time.monotonic() - wall0
                cpu = bb.cpu_seconds(proc.pid) - cpu0
                s1 = max(s1, server_cpu(admin, worker_name))
                c1 = commits(admin, db)
            if spy is not None:
                spy[0].wait(timeout=30)
        records = [j.record for j in await app.ajobs(status="succeeded", limit=n)]
        first = min(r.started_at or 0.0 for r in records)
        last = max(r.finished_at or 0.0 for r in records)
        result = {
            "jobs_s": len(records) / (last - first),
            "worker_cpu_pct": 100 * cpu / wall,
            "server_cpu_pct": 100 * (s1 - s0) / wall,
            "worker_us_per_job": 1e6 * cpu / n,
            "server_us_per_job": 1e6 * (s1 - s0) / n,
            "commits_per_job": (c1 - c0) / n,
        }
        if counts_file is not None and counts_file.exists():
            counted = json.loads(counts_file.read_text())
            for kind, count in sorted(counted.items(), key=lambda kv: -kv[1]):
                print(f"    {count / n:7.3f}/job  {count:7d}  {kind}")
        if trace_file is not None and trace_file.exists():
            claim_chain(trace_file)
        if spy is not None:
            hottest(spy[1])
        return result
    finally:
        os.environ.clear()
        os.environ.update(env_before)
        await app.aclose()


def hottest(raw: Path, top: int = 25) -> None:
    """The frames most often on the stack (inclusive) and on top of it (self)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        k = int(count)
        total += k
        own[frames[-1]] += k
        for frame in set(frames):
            inclusive[frame] += k
    print(f"  py-spy: {total} samples; self:")
    for frame, k in own.most_common(top):
        print(f"    {100 * k / total:5.1f}%  {frame[:150]}")
    print("  inclusive:")
    for frame, k in inclusive.most_common(top * 2):
        print(f"    {100 * k / total:5.1f}%  {frame[:150]}")


async def main(opts: argparse.Namespace) -> None:
    db = f"offload_drain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(opts.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db}"')  # type: ignore[arg-type]
    try:
        results: dict[str, list[float]] = collections.defaultdict(list)
        for run in range(opts.runs):
            r = await one_run(opts.url, db, opts.jobs, opts)
            load = os.getloadavg()[0]
            print(
                f"run {run + 1}: "
                + ", ".join(f"{k} {v:,.2f}" for k, v in r.items())
                + f", load {load:.2f}",
                flush=True,
            )
            for k, v in r.items():
                results[k].append(v)
        mid = ", ".join(f"{k} {statistics.median(v):,.2f}" for k, v in results.items())
        print(f"median: {mid}")
    finally:
        with psycopg.connect(opts.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{db}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--options", default="", help="extra backend URL options, e.g. pool_size=4")
    p.add_argument("--count", action="store_true", help="count the worker's statements by kind")
    p.add_argument("--trace", action="store_true", help="time the worker's claims, one by one")
    p.add_argument("--pyspy", help="path of a py-spy binary: sample the worker")
    asyncio.run(main(p.parse_args()))
