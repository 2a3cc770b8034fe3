"""Benchmark of a backend: submit rates, end-to-end throughput, pickup latency, idle CPU.

Run from the repository root (see benchmarks/README.md for what each figure means)::

    .venv/bin/python benchmarks/backend_bench.py --backend sqlite --runs 3 --out docs/benchmarks.md
    .venv/bin/python benchmarks/backend_bench.py --backend redis --runs 3 --out docs/benchmarks.md
    .venv/bin/python benchmarks/backend_bench.py --backend postgres --out docs/benchmarks.md

Every measurement uses a fresh database file in a temporary folder (SQLite), a fresh
namespace, deleted afterwards (Redis), or a fresh schema, dropped afterwards (PostgreSQL).
Workers run as real worker processes
(``python -m offload worker backend_bench:app`` with ``benchmarks/`` as the working folder), so
this file is also the app they load: ``app`` below reads its backend URL from
``$OFFLOAD_BACKEND``, which the benchmark sets for each worker it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import redis
from benchreport import command_line, write_section

import offload
from offload.client import SubmitOptions

HERE = Path(__file__).resolve().parent
BULK = 1_000  # jobs per asubmit_many call
SUBMITTERS = 100  # concurrent submitters in the group-commit measurement
STATS_POLL = 0.05  # seconds between completion checks while a worker drains the queue
IDLE_SETTLE = 1.5  # seconds a fresh worker idles before idle CPU and pickup are measured
IDLE_WINDOW = 5.0  # seconds over which idle CPU is measured
PICKUP_PAUSE = (0.02, 0.1)  # random pause between pickup samples, seconds
WORKER_START_TIMEOUT = 30.0


# -- the app the measured workers load ---------------------------------------------------------
async def noop() -> None:
    """An async no-op task: runs on the worker's event loop."""


def noop_sync() -> None:
    """A plain-function no-op task: runs in the worker's thread executor."""


def build_app(backend: str | None = None) -> offload.App:
    """An App with the two no-op tasks; ``backend=None`` reads ``$OFFLOAD_BACKEND``."""
    app = offload.App(backend)
    app.task(name="noop")(noop)
    app.task(name="noop_sync")(noop_sync)
    return app


app = build_app()  # what `python -m offload worker backend_bench:app` loads


def task_of(app: offload.App, name: str) -> offload.Task[[], None]:
    return offload.Task(app, app.registry.get(name))


# -- what is measured --------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str  # "jobs/s", "ms" or "%"


METRICS = (
    Metric("submit_seq", "Submit, sequential `await task.asubmit()`", "jobs/s"),
    Metric("submit_conc", f"Submit, {SUBMITTERS} concurrent submitters (group commit)", "jobs/s"),
    Metric("submit_bulk", f"Submit, bulk `asubmit_many` of {BULK:,} per call", "jobs/s"),
    Metric("e2e_async", "End-to-end, async no-op, 1 worker process", "jobs/s"),
    Metric("e2e_async_cpu", "Worker CPU while draining async no-ops (% of one core)", "%"),
    Metric("e2e_thread", "End-to-end, thread no-op, 1 worker process", "jobs/s"),
    Metric("e2e_thread_cpu", "Worker CPU while draining thread no-ops (% of one core)", "%"),
    Metric("pickup_p50", "Pickup latency p50 (created -> started)", "ms"),
    Metric("pickup_p90", "Pickup latency p90", "ms"),
    Metric("pickup_p99", "Pickup latency p99", "ms"),
    Metric("pickup_return_p50", "Pickup latency p50 (submit returned -> started)", "ms"),
    Metric("idle_cpu", "Idle worker CPU (% of one core)", "%"),
)
#: Only measured on Redis: what one queued no-op job costs in Redis memory.
REDIS_MEMORY = Metric("redis_bytes", "Redis memory per queued job (`used_memory` growth)", "bytes")

#: (metric, mode, threshold, higher is better, wording) for the targets set in the issue
TARGETS = (
    ("e2e_async", "normal", 3_000.0, True, ">= 3,000 jobs/s"),
    ("e2e_async", "full", 1_000.0, True, ">= 1,000 jobs/s"),
    ("pickup_p50", "normal", 5.0, False, "< 5 ms"),
    ("pickup_p50", "full", 5.0, False, "< 5 ms"),
    ("e2e_async", "redis", 5_000.0, True, ">= 5,000 jobs/s"),
    ("submit_conc", "redis", 8_000.0, True, ">= 8,000 jobs/s"),
    ("submit_bulk", "redis", 50_000.0, True, ">= 50,000 jobs/s"),
    ("pickup_p50", "redis", 1.0001, False, "<= 1 ms"),
    ("submit_conc", "postgres", 5_000.0, True, ">= 5,000 jobs/s"),
    ("pickup_p50", "postgres", 5.0001, False, "<= 5 ms"),
)

Sample = dict[str, float]


@dataclass(frozen=True)
class Config:
    jobs: int
    sequential_jobs: int
    pickup_samples: int
    concurrency: int | None
    redis_url: str
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    only: tuple[str, ...] = ()  # step keys to run (all when empty)


def backend_url(folder: Path, name: str, mode: str, cfg: Config) -> str:
    """A fresh store for one step: a database file, or a Redis namespace."""
    if mode == "redis":
        return f"{cfg.redis_url}?prefix=offload-bench-{uuid.uuid4().hex[:10]}"
    if mode == "postgres":
        glue = "&" if "?" in cfg.postgres_url else "?"  # e.g. --postgres-url '...?group_flushes=1'
        return f"{cfg.postgres_url}{glue}schema=offload_bench_{uuid.uuid4().hex[:10]}"
    return f"sqlite:///{folder / name}.db?synchronous={mode}"


def drop_namespace(url: str) -> None:
    """Delete a benchmark's Redis namespace or PostgreSQL schema (nothing to do for SQLite:
    its folder goes)."""
    if url.startswith("postgres"):
        import psycopg

        from offload.backends.postgres.url import split_url

        base, options = split_url(url)
        schema = options["schema"]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]
        return
    if not url.startswith("redis"):
        return
    base, _, prefix = url.partition("?prefix=")
    with redis.Redis.from_url(base) as client:
        keys = list(client.scan_iter(match="{" + prefix + "}*", count=5000))
        for start in range(0, len(keys), 5000):
            client.unlink(*keys[start : start + 5000])


async def redis_memory_per_job(url: str, n: int) -> float:
    """Bytes of Redis ``used_memory`` one queued no-op job adds (submitted in bulk)."""
    base = url.partition("?")[0]
    app = build_app(url)
    try:
        await app.backend()
        with redis.Redis.from_url(base) as client:
            before = int(client.info("memory")["used_memory"])
            await submit_bulk(app, "noop", n)
            after = int(client.info("memory")["used_memory"])
        return (after - before) / n
    finally:
        await app.aclose()
        drop_namespace(url)


# -- 1. submit rates ---------------------------------------------------------------------------
async def submit_rate(url: str, n: int, style: str) -> float:
    """Jobs/s one client stores, one at a time, from concurrent submitters, or in bulk."""
    app = build_app(url)
    task = task_of(app, "noop")
    try:
        await app.backend()  # open the database before the clock starts
        started = time.perf_counter()
        if style == "sequential":
            for _ in range(n):
                await task.asubmit()
        elif style == "concurrent":

            async def submitter(count: int) -> None:
                for _ in range(count):
                    await task.asubmit()

            await asyncio.gather(*(submitter(k) for k in split(n, SUBMITTERS)))
        else:
            await submit_bulk(app, "noop", n)
        return n / (time.perf_counter() - started)
    finally:
        await app.aclose()


async def submit_bulk(app: offload.App, task: str, n: int) -> None:
    spec = app.registry.get(task)
    for size in split_by(n, BULK):
        await app.asubmit_many([app.prepare(spec, (), {}, SubmitOptions()) for _ in range(size)])


def split(n: int, parts: int) -> list[int]:
    """``n`` as ``parts`` near-equal counts (zeros left out)."""
    return [c for c in (n // parts + (i < n % parts) for i in range(parts)) if c]


def split_by(n: int, size: int) -> list[int]:
    return [min(size, n - start) for start in range(0, n, size)]


# -- worker processes --------------------------------------------------------------------------
def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def _log_text(path: Path) -> str:
    return path.read_text(errors="replace")


@asynccontextmanager
async def running_worker(
    url: str, log_path: Path, concurrency: int | None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A real worker process on ``url``, yielded once it serves; stopped with SIGTERM after."""
    argv = [sys.executable, "-m", "offload", "worker", "backend_bench:app"]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    env = {**os.environ, "OFFLOAD_BACKEND": url}
    log = _open_log(log_path)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=HERE, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
        )
    finally:
        log.close()  # the child holds its own copy
    try:
        await _until_serving(proc, log_path)
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _until_serving(proc: asyncio.subprocess.Process, log_path: Path) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while " serving " not in _log_text(log_path):
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{_log_text(log_path)[-3000:]}")
        await asyncio.sleep(0.01)


async def counts(app: offload.App) -> tuple[int, int]:
    """(succeeded, failed or cancelled) over all queues."""
    stats = await (await app.backend()).stats()
    ok = sum(s.count(offload.State.SUCCEEDED) for s in stats)
    bad = sum(s.count(offload.State.FAILED) + s.count(offload.State.CANCELLED) for s in stats)
    return ok, bad


# -- 2. end-to-end throughput ------------------------------------------------------------------
async def end_to_end(url: str, kind: str, cfg: Config, log_path: Path) -> Sample:
    """Jobs/s one worker process drains from a pre-filled queue, and the CPU it used meanwhile.

    The clock runs from the worker's first claim (earliest ``started_at``) to the last
    ``finished_at``: both are the backend's clock, and interpreter start-up is left out.
    """
    task = "noop" if kind == "async" else "noop_sync"
    n = cfg.jobs
    app = build_app(url)
    try:
        await submit_bulk(app, task, n)
        async with running_worker(url, log_path, cfg.concurrency) as proc:
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            deadline = wall0 + 60 + n / 100
            while True:
                ok, bad = await counts(app)
                if bad:
                    raise RuntimeError(f"{bad} {task} job(s) did not succeed; see {log_path}")
                if ok >= n:
                    cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0)
                    break
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{ok}/{n} jobs done when the worker stopped or timed out")
                await asyncio.sleep(STATS_POLL)
        records = [j.record for j in await app.ajobs(status="succeeded", limit=n)]
        first = min(r.started_at or 0.0 for r in records)
        last = max(r.finished_at or 0.0 for r in records)
        return {f"e2e_{kind}": n / (last - first), f"e2e_{kind}_cpu": 100 * cpu}
    finally:
        await app.aclose()


# -- 3 and 4. idle CPU and pickup latency -------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_and_pickup(url: str, cfg: Config, log_path: Path, rng: random.Random) -> Sample:
    app = build_app(url)
    task = task_of(app, "noop")
    try:
        await app.backend()
        async with running_worker(url, log_path, cfg.concurrency) as proc:
            await asyncio.sleep(IDLE_SETTLE)
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(IDLE_WINDOW)
            idle_cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - wall0)

            jobs: list[offload.Job] = []
            returned: list[float] = []
            for _ in range(cfg.pickup_samples):
                job = await task.asubmit()
                returned.append(time.time())  # the worker's started_at uses the same clock
                jobs.append(job)
                await asyncio.sleep(rng.uniform(*PICKUP_PAUSE))
                while not (await job.arefresh()).record.is_terminal:
                    await asyncio.sleep(0.005)  # still busy: wait until the worker is idle again
        from_created = [1000 * ((j.record.started_at or 0.0) - j.record.created_at) for j in jobs]
        from_return = [
            1000 * ((j.record.started_at or 0.0) - t) for j, t in zip(jobs, returned, strict=True)
        ]
    finally:
        await app.aclose()
    p = statistics.quantiles(from_created, n=100, method="inclusive")
    return {
        "pickup_p50": p[49],
        "pickup_p90": p[89],
        "pickup_p99": p[98],
        "pickup_return_p50": statistics.median(from_return),
        "idle_cpu": 100 * idle_cpu,
    }


# -- one run -----------------------------------------------------------------------------------
async def measure(mode: str, folder: Path, cfg: Config, rng: random.Random) -> Sample:
    """Every figure once for one mode (a SQLite ``synchronous`` or redis); each step on a
    fresh store."""
    made: list[str] = []

    def url(name: str) -> str:
        made.append(backend_url(folder, name, mode, cfg))
        return made[-1]

    def log(name: str) -> Path:
        return folder / f"{name}.log"

    steps: list[tuple[str, Callable[[], Awaitable[float | Sample]]]] = [
        ("submit_seq", lambda: submit_rate(url("seq"), cfg.sequential_jobs, "sequential")),
        ("submit_conc", lambda: submit_rate(url("conc"), cfg.jobs, "concurrent")),
        ("submit_bulk", lambda: submit_rate(url("bulk"), cfg.jobs, "bulk")),
        ("e2e_async", lambda: end_to_end(url("e2e-async"), "async", cfg, log("e2e-async"))),
        ("e2e_thread", lambda: end_to_end(url("e2e-thread"), "thread", cfg, log("e2e-thread"))),
        ("pickup", lambda: idle_and_pickup(url("idle"), cfg, log("idle"), rng)),
    ]
    if mode == "redis":
        steps.append(("redis_bytes", lambda: redis_memory_per_job(url("memory"), cfg.jobs)))
    sample: Sample = {}
    for key, step in steps:
        if cfg.only and key not in cfg.only:
            continue
        started = time.monotonic()
        try:
            value = await step()
        finally:
            for used in made:
                drop_namespace(used)
            made.clear()
        if isinstance(value, dict):
            sample.update(value)
        else:
            sample[key] = value
        progress(f"  {mode:6} {key:12} {time.monotonic() - started:5.1f}s")
    return sample


async def run_all(modes: list[str], runs: int, cfg: Config) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {m: {} for m in modes}
    rng = random.Random()
    for run in range(1, runs + 1):
        for mode in modes:  # modes alternate, so slow drift of the machine hits both alike
            progress(f"run {run}/{runs}, {column(mode)}")
            with tempfile.TemporaryDirectory(prefix="offload-bench-") as tmp:
                sample = await measure(mode, Path(tmp), cfg, rng)
            for key, value in sample.items():
                results[mode].setdefault(key, []).append(value)
    return results


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- reporting ---------------------------------------------------------------------------------
def column(mode: str) -> str:
    return mode if mode in ("redis", "postgres") else f"synchronous={mode}"


def metrics_of(results: dict[str, dict[str, list[float]]]) -> list[Metric]:
    return [*METRICS, REDIS_MEMORY] if "redis" in results else list(METRICS)


def fmt(value: float, unit: str) -> str:
    if unit in ("jobs/s", "bytes"):
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.2f}"
    return f"{value:.1f}"


def cell(values: list[float], unit: str) -> str:
    mid = fmt(statistics.median(values), unit)
    if len(values) == 1:
        return mid
    return f"{mid} ({fmt(min(values), unit)} to {fmt(max(values), unit)})"


def target_text(key: str, modes: list[str]) -> str:
    wanted = {mode: wording for k, mode, _, _, wording in TARGETS if k == key and mode in modes}
    if len(set(wanted.values())) == 1:
        return next(iter(wanted.values()))
    return " / ".join(f"{wording} ({mode})" for mode, wording in wanted.items())


def table(results: dict[str, dict[str, list[float]]]) -> str:
    modes = list(results)
    head = ["Measure", *(column(m) for m in modes), "Target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in metrics_of(results):
        cells = [cell(results[m][metric.key], metric.unit) for m in modes]
        label = f"{metric.label} [{metric.unit}]"
        lines.append("| " + " | ".join([label, *cells, target_text(metric.key, modes)]) + " |")
    return "\n".join(lines)


def verdicts(results: dict[str, dict[str, list[float]]]) -> list[str]:
    lines = []
    for key, mode, threshold, higher, wording in TARGETS:
        if mode not in results:
            continue
        metric = next(m for m in METRICS if m.key == key)
        values = results[mode][key]
        mid = statistics.median(values)
        met = mid >= threshold if higher else mid < threshold
        every = all((v >= threshold) if higher else (v < threshold) for v in values)
        status = "**met**" if met else "**missed**"
        if met and not every:
            status += " (median only; not in every run)"
        lines.append(
            f"- {metric.label}, {column(mode)}: {fmt(mid, metric.unit)} {metric.unit}, "
            f"target {wording}: {status}"
        )
    return lines


def commentary(results: dict[str, dict[str, list[float]]]) -> list[str]:
    def med(mode: str, key: str) -> float:
        return statistics.median(results[mode][key])

    lines = []
    for mode in results:
        lines.append(
            f"- {column(mode)}: {SUBMITTERS} concurrent submitters store "
            f"{med(mode, 'submit_conc') / med(mode, 'submit_seq'):.1f}x as many jobs/s as one "
            f"sequential submitter (group commit), bulk submits "
            f"{med(mode, 'submit_bulk') / med(mode, 'submit_seq'):.1f}x; thread no-ops run at "
            f"{100 * med(mode, 'e2e_thread') / med(mode, 'e2e_async'):.0f}% of the async rate."
        )
    if {"normal", "full"} <= set(results):
        e2e = med("full", "e2e_async") / med("normal", "e2e_async")
        seq = med("full", "submit_seq") / med("normal", "submit_seq")
        lines.append(
            f"- FULL keeps {100 * e2e:.0f}% of NORMAL's end-to-end rate and {100 * seq:.0f}% of "
            "its sequential submit rate: a sequential submitter pays one fsync per job, while "
            "the worker's claims and completions share transactions."
        )
    for mode in results:
        cpu, rate = med(mode, "e2e_async_cpu"), med(mode, "e2e_async")
        cost = 1e4 * cpu / rate  # microseconds of worker CPU per job
        parts = (
            "its event loop and redis-py"
            if mode == "redis"
            else "its event loop and its SQLite writer thread, which share one GIL"
        )
        line = (
            f"- {column(mode)}: draining async no-ops, the worker process used {cpu:.0f}% "
            f"of one core: about {cost:.0f} us of CPU per job ({parts}); a fully busy core "
            f"would give {1e6 / cost:,.0f} jobs/s at that cost."
        )
        goal = next((t for k, m, t, _, _ in TARGETS if k == "e2e_async" and m == mode), None)
        if goal is not None and rate < goal:
            line += f" The {goal:,.0f} jobs/s target needs at most {1e6 / goal:.0f} us per job"
            line += (
                "."
                if 1e6 / cost < goal
                else " and less waiting: on round trips to the backend, on commits, or for "
                "CPU held by other processes."
            )
        lines.append(line)
    sqlite_modes = [m for m in results if m not in ("redis", "postgres")]
    if sqlite_modes:
        cpu = max(statistics.median(results[m]["idle_cpu"]) for m in sqlite_modes)
        lines.append(
            f"- An idle SQLite worker uses about {cpu:.1f}% of one core: it reads "
            "`PRAGMA data_version` every 2 ms so that it picks up new jobs quickly. Pickup "
            "latency is that poll period plus one claim transaction; 'submit returned -> "
            "started' can be shorter than 'created -> started' because `created_at` is taken "
            "before the submit's COMMIT."
        )
    if "postgres" in results:
        lines.append(
            f"- An idle PostgreSQL worker uses about {med('postgres', 'idle_cpu'):.1f}% of one "
            "core: it waits on LISTEN for the NOTIFY a submit sends after its commit, then "
            "claims with one `UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING` statement."
        )
    if "redis" in results:
        lines.append(
            f"- An idle Redis worker uses about {med('redis', 'idle_cpu'):.1f}% of one core: it "
            "sleeps on a pub/sub channel that a submit to an empty queue publishes to, then "
            "claims. Concurrent submits and completions in one process share one Lua script "
            "run (group commit), which is why concurrent submitters beat a sequential one. A "
            f"queued no-op job takes about {med('redis', 'redis_bytes'):,.0f} bytes of Redis "
            "memory (its hash, its place in the ready queue and in four listing indexes)."
        )
    return lines


def machine(tmp_folder: str) -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"- CPU: {os.cpu_count()} cores (nproc), {model}",
        f"- OS: {platform.system()} {platform.release()}; temp folder {tmp_folder} "
        f"({filesystem(tmp_folder)})",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
    ]


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def filesystem(path: str) -> str:
    best, kind = "", "unknown filesystem"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, point, fstype, *_ = line.split()
            if path.startswith(point) and len(point) > len(best):
                best, kind = point, fstype
    except OSError:
        pass
    return kind


@dataclass(frozen=True)
class Context:
    """How and where the figures were taken, for the report."""

    cfg: Config
    machine: list[str]
    load_start: str
    load_end: str
    duration: str
    command: str


def title(results: dict[str, dict[str, list[float]]]) -> str:
    if "postgres" in results:
        return "PostgreSQL backend"
    return "Redis backend" if "redis" in results else "SQLite backend"


def section(results: dict[str, dict[str, list[float]]], ctx: Context) -> str:
    runs = len(next(iter(next(iter(results.values())).values())))
    cfg = ctx.cfg
    slots = cfg.concurrency or offload.Settings().concurrency
    server = []
    if "redis" in results:
        with redis.Redis.from_url(cfg.redis_url) as client:
            info = client.info("server")
        server = [
            f"- Redis {info['redis_version']} on loopback ({cfg.redis_url}), the machine's "
            "shared server, without persistence (with AOF on, every write also goes to the "
            "append-only file: not measured here)"
        ]
    if "postgres" in results:
        server = [
            f"- PostgreSQL {postgres_version(cfg.postgres_url)} on loopback "
            f"({cfg.postgres_url}), the machine's shared server; a fresh schema "
            "per step"
        ]
    parts = [
        f"## {title(results)}",
        "",
        f"Measured with `benchmarks/backend_bench.py` on {datetime.now(UTC):%Y-%m-%d} in "
        f"{ctx.duration}; see `benchmarks/README.md` for what each figure means.",
        "",
        *ctx.machine,
        *server,
        f"- Load average (1, 5, 15 min) at the start: {ctx.load_start}; at the end: "
        f"{ctx.load_end} (other processes shared the machine: mind the min to max ranges)",
        f"- Jobs: {cfg.jobs:,} per measurement ({cfg.sequential_jobs:,} for the sequential "
        f"submit), {cfg.pickup_samples} pickup samples per run; one worker process with "
        f"{slots} slots and otherwise default settings.",
        "",
        "Command:",
        "",
        "```",
        ctx.command,
        "```",
        "",
        f"Median of {runs} run(s); min to max in brackets.",
        "",
        table(results),
        "",
        "Targets:",
        "",
        *verdicts(results),
        "",
        "Commentary:",
        "",
        *commentary(results),
        "",
    ]
    return "\n".join(parts)


def postgres_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--jobs", type=int, default=10_000, help="jobs per measurement (10000)")
    p.add_argument(
        "--sequential-jobs",
        type=int,
        default=2_000,
        help="jobs for the one-at-a-time submit rate (2000)",
    )
    p.add_argument("--backend", choices=["sqlite", "redis", "postgres"], default="sqlite")
    p.add_argument(
        "--synchronous",
        choices=["normal", "full", "both"],
        default="both",
        help="SQLite only: the URL's synchronous mode(s) (both)",
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/14",
        help="Redis only: server and database; each step uses a fresh namespace "
        "that is deleted afterwards (redis://127.0.0.1:6379/14)",
    )
    p.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL only: the database; each step uses a fresh schema that is "
        "dropped afterwards",
    )
    p.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported (3)")
    p.add_argument("--pickup-samples", type=int, default=200, help="pickup samples per run")
    p.add_argument("--concurrency", type=int, help="worker slots (default: the worker's own)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only this step (repeatable): submit_seq, submit_conc, submit_bulk, "
        "e2e_async, e2e_thread, pickup",
    )
    p.add_argument("--out", type=Path, help="write the results section into this Markdown file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.backend in ("redis", "postgres"):
        modes = [ns.backend]
    else:
        modes = ["normal", "full"] if ns.synchronous == "both" else [ns.synchronous]
    cfg = Config(
        ns.jobs,
        min(ns.sequential_jobs, ns.jobs),
        ns.pickup_samples,
        ns.concurrency,
        ns.redis_url,
        ns.postgres_url,
        tuple(ns.only),
    )
    tmp = tempfile.gettempdir()
    about, load_start = machine(tmp), load_average()
    started = time.monotonic()
    results = asyncio.run(run_all(modes, ns.runs, cfg))
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    if ns.only:  # a partial run: its figures only (no table, targets or report section)
        for mode, sample in results.items():
            for key, values in sample.items():
                print(f"{column(mode)} {key}: " + ", ".join(f"{v:,.1f}" for v in values))
        return 0
    print(table(results))
    print()
    print("\n".join(verdicts(results)))
    print(f"\ntotal time {minutes}m{seconds:02d}s")
    if ns.out is not None:
        duration = f"{minutes}m{seconds:02d}s"
        ctx = Context(cfg, about, load_start, load_average(), duration, command_line())
        write_section(ns.out, title(results), section(results, ctx))
        print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
