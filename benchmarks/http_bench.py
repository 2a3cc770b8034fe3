"""Benchmark of HTTP submission latency while CPU-bound jobs keep every core busy.

Run from the repository root (see benchmarks/README.md for what each figure means)::

    .venv/bin/python benchmarks/http_bench.py --runs 3 --out docs/benchmarks.md

Three systems are measured, each as a user would run it, as real processes on free loopback
ports in fresh temporary folders:

- ``up``: ``offload up`` (the API, the dashboard and an embedded worker in one process) serving
  the bundled demo tasks;
- ``split``: ``offload serve offload.demo:app`` beside ``offload worker offload.demo:app``
  (``--api-workers N``: ``offload serve --workers N``, N uvicorn processes);
- ``gunicorn``: the same API under ``gunicorn -k uvicorn.workers.UvicornWorker -w N`` beside
  the same worker (the deployment of issue 17);
- ``fastapi``: a plain FastAPI app under uvicorn that runs the same function with
  ``BackgroundTasks`` (``http_baseline_app.py``).

Each is first loaded with CPU-bound ``crunch`` jobs (the demo task, on offload's process
executor), enough to keep every core busy for the whole measurement; then 100 clients submit
more ``crunch`` jobs, at a steady rate and then back to back, through ``offload.loadtest``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import os
import platform
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlsplit

import httpx
from benchreport import command_line, write_section

from offload import loadtest

HERE = Path(__file__).resolve().parent
SECTION = "HTTP submission latency"
DEMO_APP = "offload.demo:app"
TASK = "crunch"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
LOAD_LIMIT = 10.0  # seconds the loading of the CPU may send for at most
WARMUP_LIMIT = 10.0  # seconds the unmeasured warm-up may send for at most

SYSTEMS = {
    "up": "offload up",
    "split": "offload serve + worker",
    "gunicorn": "gunicorn (uvicorn workers) + worker",
    "fastapi": "FastAPI BackgroundTasks",
}
OFFLOAD_SYSTEMS = ("up", "split", "gunicorn")


# -- what is measured --------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str  # "ms", "req/s", "%" or "count"


METRICS = (
    Metric("paced_p50", "Latency p50", "ms"),
    Metric("paced_p95", "Latency p95", "ms"),
    Metric("paced_p99", "Latency p99", "ms"),
    Metric("paced_max", "Latency max", "ms"),
    Metric("paced_errors", "Errors (non-2xx or no answer)", "count"),
    Metric("paced_rps", "Requests done, answered or failed", "req/s"),
    Metric("cpu_busy", "CPU busy, all cores, during the steady phase", "%"),
    Metric("cpu_low", "of which low-priority (nice) processes", "%"),
    Metric("loop_wait", "API event loop ready but waiting for a CPU", "%"),
    Metric("client_cpu", "Benchmark client CPU, of one core", "%"),
    Metric("closed_rps", "Back to back: throughput", "req/s"),
    Metric("closed_p50", "Back to back: latency p50", "ms"),
    Metric("closed_p99", "Back to back: latency p99", "ms"),
    Metric("closed_errors", "Back to back: errors", "count"),
)

#: (metric, threshold, wording): the issue's targets, for offload's systems; lower is better
TARGETS = (
    ("paced_p50", 5.0, "< 5 ms"),
    ("paced_p99", 50.0, "< 50 ms"),
    ("paced_errors", 0.5, "0"),
)

Sample = dict[str, float]
Results = dict[str, dict[str, list[float]]]  # system -> metric -> one value per run


@dataclass(frozen=True)
class Config:
    requests: int
    concurrency: int
    rate: float
    closed_requests: int
    warmup: int
    load_seconds: float
    limit: float
    rounds: int
    backend: str | None
    baseline_workers: int
    systems: tuple[str, ...]
    api_workers: int = 1  # API processes of split and gunicorn
    job_seconds: float = 0.0  # one crunch job here, measured at the start
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)


# -- the servers -------------------------------------------------------------------------------
@dataclass
class Server:
    """The processes of one system under test, listening on ``base``."""

    kind: str
    procs: list[subprocess.Popen[bytes]]
    base: str
    logs: list[Path]
    backend: str

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.logs if p.exists())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def backend_url(cfg: Config, folder: Path) -> str:
    """The run's backend: a fresh SQLite file, or ``--backend`` with ``{run}`` made unique."""
    if cfg.backend is None:
        return f"sqlite:///{folder / 'offload.db'}"
    return cfg.backend.replace("{run}", f"bench{uuid.uuid4().hex[:12]}")


def backend_kind(cfg: Config) -> str:
    scheme = (cfg.backend or "sqlite:").split(":", 1)[0]
    return {"sqlite": "SQLite", "redis": "Redis", "rediss": "Redis"}.get(scheme, scheme)


async def drop_redis_namespace(url: str) -> None:
    """Delete the keys of the Redis namespace (``?prefix=``) that ``{run}`` made unique."""
    import redis.asyncio as aioredis

    prefix = parse_qs(urlsplit(url).query).get("prefix", [""])[0]
    if not prefix.startswith("bench"):
        return
    client = aioredis.Redis.from_url(url.split("?", 1)[0])
    try:
        async for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


def _spawn(
    argv: list[str], folder: Path, name: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    log = folder / f"{name}.log"
    out: IO[bytes]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log


def start(kind: str, cfg: Config, folder: Path) -> Server:
    port = free_port()
    python = [sys.executable, "-m"]
    backend = backend_url(cfg, folder)
    env = {**os.environ, "OFFLOAD_BACKEND": backend}
    host = ["--host", "127.0.0.1", "--port", str(port)]
    if kind == "up":
        argvs = {"up": [*python, "offload", "up", *host]}
    elif kind in ("split", "gunicorn"):
        env["OFFLOAD_APP"] = DEMO_APP  # for gunicorn's offload.up:asgi_from_env()
        argvs = {
            "serve": api_argv(kind, cfg.api_workers, port),
            "worker": [*python, "offload", "worker", DEMO_APP],
        }
    else:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        workers = ["--workers", str(cfg.baseline_workers)] if cfg.baseline_workers > 1 else []
        argvs = {"uvicorn": [*python, "uvicorn", "http_baseline_app:app", *host, *workers]}
    procs, logs = [], []
    for name, argv in argvs.items():
        proc, log = _spawn(argv, folder, name, env)
        procs.append(proc)
        logs.append(log)
    return Server(kind, procs, f"http://127.0.0.1:{port}", logs, backend)


def api_argv(kind: str, workers: int, port: int) -> list[str]:
    """``offload serve`` (uvicorn, ``--workers``), or the same app under gunicorn."""
    if kind == "split":
        more = ["--workers", str(workers)] if workers > 1 else []
        argv = ["offload", "serve", DEMO_APP, "--host", "127.0.0.1", "--port", str(port), *more]
        return [sys.executable, "-m", *argv]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "offload.up:asgi_from_env()",
    ]


async def until_ready(server: Server) -> None:
    path = "/health" if server.kind == "fastapi" else "/health/ready"
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=server.base, timeout=2) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(path)).status_code == 200:
                    break
            if any(p.poll() is not None for p in server.procs) or time.monotonic() > deadline:
                raise RuntimeError(f"{server.kind} did not start:\n{server.log_tail()}")
            await asyncio.sleep(0.1)
        if server.kind in ("split", "gunicorn"):  # the worker must be serving too
            while not (await client.get("/v1/workers")).json()["workers"]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start:\n{server.log_tail()}")
                await asyncio.sleep(0.1)


def stop(server: Server) -> None:
    """SIGINT (Ctrl-C) to every process, a second one after a moment, SIGKILL if need be."""
    for signum, wait in ((signal.SIGINT, 2.0), (signal.SIGINT, STOP_TIMEOUT)):
        for proc in server.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signum)
        deadline = time.monotonic() + wait
        while any(p.poll() is None for p in server.procs) and time.monotonic() < deadline:
            time.sleep(0.05)
    for proc in server.procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        # the process group also holds the children (process executor, uvicorn workers)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def running(kind: str, cfg: Config, folder: Path) -> AsyncIterator[Server]:
    server = start(kind, cfg, folder)
    try:
        yield server
    finally:
        stop(server)
        made_up = cfg.backend is not None and "{run}" in cfg.backend
        if kind in OFFLOAD_SYSTEMS and made_up and server.backend.startswith(("redis:", "rediss:")):
            await drop_redis_namespace(server.backend)


# -- CPU accounting ----------------------------------------------------------------------------
def cpu_ticks() -> tuple[int, int, int]:
    """(busy, busy in niced processes, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy, nice, busy + idle + iowait


def run_delay(pid: int) -> float:
    """Seconds the main thread of ``pid`` has spent runnable but waiting for a CPU."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except OSError:
        return math.nan


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def crunch_seconds(rounds: int) -> float:
    """How long one ``crunch`` job takes on this machine (best of three, in this process)."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        digest = b"offload"
        for _ in range(rounds):
            digest = hashlib.sha256(digest).digest()
        best = min(best, time.perf_counter() - started)
    return best


# -- one system, once --------------------------------------------------------------------------
async def submit(
    server: Server, cfg: Config, n: int, *, rate: float | None, limit: float | None = None
) -> loadtest.Report:
    """``n`` crunch jobs from ``cfg.concurrency`` clients; no more are sent after ``limit`` s."""
    return await loadtest.run(
        server.base,
        task=TASK,
        args=[cfg.rounds],
        n=n,
        concurrency=cfg.concurrency,
        rate=rate,
        duration=limit or cfg.limit,
    )


def load_jobs(cfg: Config) -> int:
    """Crunch jobs worth ``load_seconds`` of work on every core."""
    return math.ceil(cfg.cores * cfg.load_seconds / cfg.job_seconds)


async def cpu_queue_left(server: Server) -> int:
    """Crunch jobs still queued or running (offload only; -1 for the baseline)."""
    if server.kind == "fastapi":
        return -1
    async with httpx.AsyncClient(base_url=server.base, timeout=10) as client:
        queues = (await client.get("/v1/queues")).json()["queues"]
    counts: dict[str, int] = next((q["counts"] for q in queues if q["name"] == "cpu"), {})
    return int(counts.get("queued", 0)) + int(counts.get("running", 0))


async def measure(kind: str, cfg: Config, folder: Path) -> Sample:
    """Start ``kind``, load the CPU, measure steady and back-to-back submissions, stop it."""
    async with running(kind, cfg, folder) as server:
        await until_ready(server)
        # The load: the baseline may not take it all within the limit, but a few dozen jobs
        # already fill its thread pool, and the measured submissions keep adding work.
        load = await submit(server, cfg, load_jobs(cfg), rate=None, limit=LOAD_LIMIT)
        if load.succeeded < cfg.cores:
            raise RuntimeError(f"{kind}: loading the CPU failed: {load.errors}")
        await asyncio.sleep(1.0)  # the worker claims the load; the cores get busy
        if cfg.warmup:
            await submit(server, cfg, cfg.warmup, rate=cfg.rate, limit=WARMUP_LIMIT)
        api = server.procs[0].pid  # offload up, offload serve, uvicorn: the loop's process
        load0 = os.getloadavg()[0]
        ticks0, client0, wall0, wait0 = cpu_ticks(), own_cpu(), time.monotonic(), run_delay(api)
        paced = await submit(server, cfg, cfg.requests, rate=cfg.rate)
        ticks1, client1, wall1, wait1 = cpu_ticks(), own_cpu(), time.monotonic(), run_delay(api)
        closed = None
        if cfg.closed_requests:
            closed = await submit(server, cfg, cfg.closed_requests, rate=None)
        if await cpu_queue_left(server) == 0:
            raise RuntimeError(f"{kind}: the CPU load ran out; raise --load-seconds")
    total = ticks1[2] - ticks0[2]
    sample = {
        "paced_p50": paced.percentile(50),
        "paced_p95": paced.percentile(95),
        "paced_p99": paced.percentile(99),
        "paced_max": paced.percentile(100),
        "paced_errors": float(paced.requested - paced.succeeded),  # not sent in time counts
        "paced_rps": paced.throughput,
        "cpu_busy": 100 * (ticks1[0] - ticks0[0]) / total,
        "cpu_low": 100 * (ticks1[1] - ticks0[1]) / total,
        "client_cpu": 100 * (client1 - client0) / (wall1 - wall0),
        "loop_wait": 100 * (wait1 - wait0) / (wall1 - wall0),
        "load_1min": max(os.getloadavg()[0], load0),
    }
    if closed is not None:
        sample["closed_rps"] = closed.throughput
        sample["closed_p50"] = closed.percentile(50)
        sample["closed_p99"] = closed.percentile(99)
        sample["closed_errors"] = float(closed.requested - closed.succeeded)
    return sample


async def run_all(cfg: Config, runs: int) -> Results:
    results: Results = {kind: {} for kind in cfg.systems}
    for run in range(1, runs + 1):
        for kind in cfg.systems:  # systems alternate, so slow drift of the machine hits all
            started = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="offload-http-bench-") as tmp:
                sample = await measure(kind, cfg, Path(tmp))
            for key, value in sample.items():
                results[kind].setdefault(key, []).append(value)
            progress(
                f"run {run}/{runs} {kind:8} p50 {sample['paced_p50']:7.2f} ms  p99 "
                f"{sample['paced_p99']:8.2f} ms  errors {sample['paced_errors']:.0f}  back to "
                f"back {sample.get('closed_rps', 0):6.0f} req/s  "
                f"({time.monotonic() - started:.0f}s)"
            )
    return results


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- reporting ---------------------------------------------------------------------------------
def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.1f}" if value >= 100 else f"{value:.2f}"
    if unit in ("req/s", "count"):
        return f"{value:,.0f}"
    return f"{value:.0f}"


def cell(values: list[float], unit: str) -> str:
    mid = fmt(statistics.median(values), unit)
    if len(values) == 1 or min(values) == max(values):
        return mid
    return f"{mid} ({fmt(min(values), unit)} to {fmt(max(values), unit)})"


def target_of(key: str) -> str:
    return next((wording for k, _, wording in TARGETS if k == key), "")


def table(results: Results) -> str:
    systems = list(results)
    head = ["Measure", *(f"{SYSTEMS[s]}" for s in systems), "Target (offload)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in METRICS:
        if any(metric.key not in results[s] for s in systems):
            continue  # not measured (--closed-requests 0)
        cells = [cell(results[s][metric.key], metric.unit) for s in systems]
        unit = "" if metric.unit == "count" else f" [{metric.unit}]"
        lines.append("| " + " | ".join([metric.label + unit, *cells, target_of(metric.key)]) + " |")
    return "\n".join(lines)


def verdicts(results: Results) -> list[str]:
    lines = []
    for kind in (s for s in results if s in OFFLOAD_SYSTEMS):
        for key, threshold, wording in TARGETS:
            metric = next(m for m in METRICS if m.key == key)
            values = results[kind][key]
            mid = statistics.median(values)
            status = "**met**" if mid < threshold else "**missed**"
            if mid < threshold and not all(v < threshold for v in values):
                status += " (median only; not in every run)"
            unit = "" if metric.unit == "count" else f" {metric.unit}"
            lines.append(
                f"- {SYSTEMS[kind]}, {metric.label.lower()}: {fmt(mid, metric.unit)}{unit}, "
                f"target {wording}: {status}"
            )
    return lines


def commentary(results: Results, cfg: Config) -> list[str]:
    def med(kind: str, key: str) -> float:
        return statistics.median(results[kind][key])

    lines = []
    for kind in results:
        errors = med(kind, "paced_errors")
        failed = (
            f" ({errors:,.0f} of {cfg.requests:,} failed: not sent within the limit, or not "
            "answered within 10 s)"
            if errors
            else ""
        )
        closed = (
            f"; back to back, {cfg.concurrency} clients got {med(kind, 'closed_rps'):,.0f} "
            "answers/s"
            if "closed_rps" in results[kind]
            else ""
        )
        lines.append(
            f"- {SYSTEMS[kind]}: at {cfg.rate:g} submissions/s, half of the requests took at "
            f"most {fmt(med(kind, 'paced_p50'), 'ms')} ms and 99% at most "
            f"{fmt(med(kind, 'paced_p99'), 'ms')} ms{failed}, while the CPU was "
            f"{med(kind, 'cpu_busy'):.0f}% busy ({med(kind, 'cpu_low'):.0f}% in low-priority "
            f"processes) and its event loop was ready but waiting for a CPU "
            f"{med(kind, 'loop_wait'):.0f}% of the time{closed}."
        )
    if "fastapi" in results:
        lines.append(
            "- The FastAPI app runs each job in a thread of the web server's own process after "
            "answering: the jobs and the event loop that answers requests share one GIL. Its "
            "thread pool (40 threads) runs up to 40 jobs at once, each holding the GIL for up "
            "to 5 ms at a time (`sys.getswitchinterval()`), so the loop gets about one turn in "
            "41; and its CPU-bound work can use one core per uvicorn process."
        )
    if any(kind in results for kind in OFFLOAD_SYSTEMS):
        lines.append(
            "- offload runs `crunch` in its process executor: one child process per core, at "
            "a lower CPU priority (nice 10), so the API and the worker's event loop get a core "
            "when they need one and the jobs take the rest."
        )
    lines.append(
        f"- Back to back, each client sends its next request when the last one is answered, so "
        f"latency is mostly waiting in line: about {cfg.concurrency} / throughput. The steady "
        "phase is the one the targets are about; the back-to-back figures show the headroom."
    )
    return lines


def machine() -> list[str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return [
        f"- CPU: {os.cpu_count()} cores (nproc), {model}",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {versions()}",
    ]


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("fastapi", "uvicorn", "uvloop", "httptools", "httpx"):
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{name} {version(name)}")
    return ", ".join(found)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def shown(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


@dataclass(frozen=True)
class Context:
    """How and where the figures were taken, for the report."""

    cfg: Config
    machine: list[str]
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]
    load_peak: float  # highest 1-minute load average seen around the steady phases
    duration: str
    command: str


def title(cfg: Config) -> str:
    return f"{SECTION} ({backend_kind(cfg)})"


def busy_note(ctx: Context, cores: int) -> str:
    """What the load average says about the machine's other work (the benchmark adds about
    ``cores`` + 2: the process executor's children, the server and the client)."""
    if max(ctx.load_start[0], ctx.load_end[0], ctx.load_peak) > 2 * cores + 2:
        return (
            "**The machine was busy with other work** (load average well above what the "
            "benchmark itself adds, about cores + 2): its processes competed with the servers "
            "for the CPU, so these figures are worse than a quiet machine's."
        )
    return "The benchmark itself keeps every core busy; mind the min to max ranges."


def section(results: Results, ctx: Context) -> str:
    cfg = ctx.cfg
    runs = len(next(iter(next(iter(results.values())).values())))
    backend = (
        f"`{cfg.backend}`, with `{{run}}` made unique for each run"
        if cfg.backend
        else "a fresh SQLite file per run, with the default `synchronous=full`"
    )
    parts = [
        f"## {title(cfg)}",
        "",
        f"Measured with `benchmarks/http_bench.py` on {datetime.now(UTC):%Y-%m-%d} in "
        f"{ctx.duration}; see `benchmarks/README.md` for what each figure means.",
        "",
        *ctx.machine,
        f"- Load average (1, 5, 15 min) at the start: {shown(ctx.load_start)}; at the end: "
        f"{shown(ctx.load_end)}; the 1-minute figure reached {ctx.load_peak:.2f} around the "
        f"steady phases. {busy_note(ctx, cfg.cores)}",
        f"- Backend: {backend}.",
        f"- Job: `crunch({cfg.rounds})`, {1000 * cfg.job_seconds:.0f} ms of CPU here. Before "
        f"measuring, {load_jobs(cfg):,} of them ({cfg.load_seconds:g} s of work per core) are "
        "submitted to get every core busy; each measured submission adds another, so the "
        "cores stay busy throughout.",
        f"- Steady phase: {cfg.requests:,} submissions from {cfg.concurrency} clients (one "
        f"keep-alive connection each) at {cfg.rate:g} submissions/s in all, after "
        f"{cfg.warmup} for warm-up; latency is counted from when a request was due. Back to "
        f"back: {cfg.closed_requests:,} more, each client sending as soon as it has its answer. "
        f"No phase sends for longer than {cfg.limit:g} s; a request not sent by then, or not "
        "answered within 10 s, counts as an error.",
        f"- offload's API runs in {cfg.api_workers} process(es) in `split` and `gunicorn` "
        "(with more than one, the event-loop figure is the parent's, not the workers'). "
        f"The FastAPI baseline runs under uvicorn with {cfg.baseline_workers} worker "
        f"process{'es' if cfg.baseline_workers > 1 else ''} and uvicorn's defaults otherwise.",
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
        "Targets (steady phase):",
        "",
        *verdicts(results),
        "",
        "Commentary:",
        "",
        *commentary(results, cfg),
        "",
    ]
    return "\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=3_000, help="steady-phase submissions (3000)")
    p.add_argument("--concurrency", type=int, default=100, help="clients (100)")
    p.add_argument("--rate", type=float, default=200.0, help="steady submissions/s in all (200)")
    p.add_argument(
        "--closed-requests",
        type=int,
        default=3_000,
        help="back-to-back submissions (3000; 0 skips them)",
    )
    p.add_argument("--warmup", type=int, default=200, help="unmeasured submissions first (200)")
    p.add_argument(
        "--load-seconds",
        type=float,
        default=20.0,
        help="seconds of crunch work per core submitted first (20)",
    )
    p.add_argument(
        "--limit",
        type=float,
        default=30.0,
        help="seconds a submission phase may send for at most (30)",
    )
    p.add_argument("--rounds", type=int, default=200_000, help="crunch rounds per job (200000)")
    p.add_argument(
        "--backend",
        help="offload's backend URL ({run} becomes unique per run); "
        "default: a fresh SQLite file per run",
    )
    p.add_argument(
        "--baseline-workers",
        type=int,
        default=1,
        help="uvicorn processes of the FastAPI baseline (1)",
    )
    p.add_argument(
        "--api-workers",
        type=int,
        default=1,
        help="API processes of split (offload serve --workers) and gunicorn (1)",
    )
    p.add_argument(
        "--systems",
        default="up,split,fastapi",
        help="comma-separated, from up, split, gunicorn, fastapi (default: up,split,fastapi)",
    )
    p.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported (3)")
    p.add_argument("--out", type=Path, help="write the results section into this Markdown file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    systems = tuple(s.strip() for s in ns.systems.split(",") if s.strip())
    unknown = set(systems) - set(SYSTEMS)
    if unknown or not systems:
        raise SystemExit(f"unknown system(s) {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    cfg = Config(
        requests=ns.requests,
        concurrency=ns.concurrency,
        rate=ns.rate,
        closed_requests=ns.closed_requests,
        warmup=ns.warmup,
        load_seconds=ns.load_seconds,
        limit=ns.limit,
        rounds=ns.rounds,
        backend=ns.backend,
        baseline_workers=ns.baseline_workers,
        systems=systems,
        api_workers=ns.api_workers,
        job_seconds=crunch_seconds(ns.rounds),
    )
    about, load_start = machine(), load_average()
    started = time.monotonic()
    results = asyncio.run(run_all(cfg, ns.runs))
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    peak = max(v for kind in results.values() for v in kind.pop("load_1min"))
    print(table(results))
    print()
    print("\n".join(verdicts(results)))
    print(f"\ntotal time {minutes}m{seconds:02d}s; highest 1-minute load average {peak:.2f}")
    if ns.out is not None:
        duration = f"{minutes}m{seconds:02d}s"
        ctx = Context(cfg, about, load_start, load_average(), peak, duration, command_line())
        write_section(ns.out, title(cfg), section(results, ctx))
        print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
