"""HTTP-level comparison: one "submit a slow job" endpoint built with offload, with FastAPI
``BackgroundTasks`` and with Celery, under 100 concurrent clients while the workers are busy.

Run from anywhere with Python 3.11+ (docs/peers.md shows the results)::

    python benchmarks/peers/http_peers.py                 # about 3 minutes
    python benchmarks/peers/http_peers.py --systems celery,background --duration 10

For each system, against a private redis-server (the same settings as run.py's): start its
worker (none for BackgroundTasks) and a uvicorn server, then let ``--clients`` keep-alive
clients each POST a job, wait for the answer, pause ``--think`` seconds and go on, for
``--duration`` seconds. Halfway, the server process is killed (SIGKILL, as a crash or the OOM
killer would) and started again at once; the clients reconnect and carry on. Afterwards the
harness waits until the acknowledged jobs have run (or stop making progress) and counts the
jobs that were acknowledged (2xx) but never ran, and those that ran twice.

(This file is not called ``http.py``: on ``sys.path`` that name would hide the standard
library's ``http`` package from every process started in this folder.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peerbench import venvs

HEALTH_TIMEOUT = 30.0  # seconds a (re)started server gets to answer /health
DRAIN_STALL = 15.0  # stop waiting for acknowledged jobs when none ran for this long
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Web:
    name: str
    label: str
    venv: str
    app: str  # uvicorn's module:attribute
    worker: tuple[str, ...] = ()  # argv after the venv's python; empty: no worker process
    backend: str = ""  # offload's OFFLOAD_BACKEND: "sqlite" or "redis"


SYSTEMS = (
    Web(
        "offload-sqlite",
        "offload (SQLite)",
        "offload",
        "webapps.offload_app:app",
        ("-m", "offload", "worker", "webapps.offload_app:jobs", "--concurrency", "10"),
        backend="sqlite",
    ),
    Web(
        "offload-redis",
        "offload (Redis)",
        "offload",
        "webapps.offload_app:app",
        ("-m", "offload", "worker", "webapps.offload_app:jobs", "--concurrency", "10"),
        backend="redis",
    ),
    Web("background", "FastAPI BackgroundTasks", "peers", "webapps.background_app:app"),
    Web(
        "celery",
        "Celery (prefork)",
        "peers",
        "webapps.celery_app:app",
        (
            "-m",
            "celery",
            "-A",
            "webapps.celery_app:celery",
            "worker",
            "-P",
            "prefork",
            "-c",
            "10",
            "-l",
            "WARNING",
        ),
    ),
)
BY_NAME = {s.name: s for s in SYSTEMS}


# -- the load ------------------------------------------------------------------------------------
@dataclass
class Load:
    """What the clients saw. Times are seconds since the load started: when a request was sent
    (latencies) or when it failed (errors)."""

    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[tuple[float, str]] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
) -> tuple[int, bool]:
    """One POST /jobs on a keep-alive connection: (status, server closes the connection)."""
    writer.write(
        b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, closing = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
            closing = True
    await reader.readexactly(length)
    return status, closing


async def client(index: int, port: int, start: float, end: float, think: float, load: Load) -> None:
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    seq = 0
    while time.monotonic() < end:
        now = time.monotonic() - start
        if conn is None:
            try:
                conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            except (OSError, TimeoutError) as exc:
                load.errors.append((now, f"connect: {type(exc).__name__}"))
                await asyncio.sleep(0.1)
                continue
        job_id = f"{index}-{seq}"
        seq += 1
        sent = time.monotonic()
        try:
            status, closing = await asyncio.wait_for(
                _request(*conn, json.dumps({"id": job_id}).encode()), REQUEST_TIMEOUT
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            load.errors.append((time.monotonic() - start, f"request: {type(exc).__name__}"))
            conn[1].close()
            conn = None
            continue
        load.latencies.append((sent - start, time.monotonic() - sent))
        load.statuses[status] += 1
        if 200 <= status < 300:
            load.acked.add(job_id)
        else:
            load.errors.append((time.monotonic() - start, f"HTTP {status}"))
        if closing:
            conn[1].close()
            conn = None
        await asyncio.sleep(think)
    if conn is not None:
        conn[1].close()


# -- one system ---------------------------------------------------------------------------------
class Scenario:
    def __init__(self, web: Web, ns: argparse.Namespace, folder: Path, server: Any) -> None:
        from peerbench.redis_server import free_port

        self.web, self.ns, self.folder, self.redis = web, ns, folder, server
        self.port = free_port()
        self.python = str(venvs.python(web.venv))
        db = folder / f"{web.name}-{uuid.uuid4().hex[:8]}.db"
        backend = f"sqlite:///{db}" if web.backend == "sqlite" else f"{server.url(0)}?prefix=web"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PEERS_", "OFFLOAD_"))}
        base.pop("VIRTUAL_ENV", None)
        self.env = {
            **base,
            "PYTHONPATH": str(venvs.HERE),
            "PEERS_REDIS_URL": server.url(0),
            "PEERS_COUNTER_URL": server.url(1),
            "PEERS_JOB_SECONDS": str(ns.job_seconds),
            "OFFLOAD_BACKEND": backend,
            "OFFLOAD_LOG_LEVEL": "WARNING",
        }

    def start_server(self, tag: str) -> Any:
        from peerbench.procs import Worker

        argv = [
            self.python,
            "-m",
            "uvicorn",
            self.web.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        log = self.folder / f"{self.web.name}-server-{tag}.log"
        proc = Worker.start(argv, self.env, venvs.HERE, log)
        wait_healthy(self.port, proc)
        return proc

    def start_worker(self) -> Any:
        from peerbench.procs import Worker

        if not self.web.worker:
            return None
        log = self.folder / f"{self.web.name}-worker.log"
        return Worker.start([self.python, *self.web.worker], self.env, venvs.HERE, log)

    def run(self) -> dict[str, Any]:
        import signal

        self.redis.reset()
        worker = self.start_worker()
        server = self.start_server("1")
        load = Load()
        restart: dict[str, float] = {}
        try:

            async def drive() -> None:
                nonlocal server
                start = time.monotonic()
                end = start + self.ns.duration
                tasks = [
                    asyncio.create_task(client(i, self.port, start, end, self.ns.think, load))
                    for i in range(self.ns.clients)
                ]
                await asyncio.sleep(self.ns.duration / 2)
                restart["killed"] = time.monotonic() - start
                os.killpg(server.pid, signal.SIGKILL)
                await asyncio.to_thread(server.proc.wait)
                server = await asyncio.to_thread(self.start_server, "2")
                restart["serving"] = time.monotonic() - start
                await asyncio.gather(*tasks)

            asyncio.run(drive())
            ran, drained = self.drain(load.acked)
            if worker is not None and not worker.alive():
                raise RuntimeError(f"the worker exited:\n{worker.log_tail()}")
        finally:
            server.stop(5)
            if worker is not None:
                worker.stop(10)
        return summarize(self.web, load, ran, restart, drained)

    def drain(self, acked: set[str]) -> tuple[dict[str, int], float]:
        """Wait until every acknowledged job ran, or none ran for DRAIN_STALL seconds."""
        counter = self.redis.client(1)
        started = last_move = time.monotonic()
        seen = -1
        while True:
            ran = {k.decode(): int(v) for k, v in counter.hgetall("peers:ran").items()}
            if acked <= ran.keys():
                break
            if len(ran) != seen:
                seen, last_move = len(ran), time.monotonic()
            elif time.monotonic() - last_move > DRAIN_STALL:
                break
            time.sleep(0.25)
        return ran, time.monotonic() - started


def wait_healthy(port: int, proc: Any) -> None:
    import httpx

    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"the server exited:\n{proc.log_tail()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server did not answer /health within {HEALTH_TIMEOUT:.0f} s")


def summarize(
    web: Web, load: Load, ran: dict[str, int], restart: dict[str, float], drained: float
) -> dict[str, Any]:
    killed = restart["killed"]
    steady = sorted(lat for at, lat in load.latencies if at < killed)
    after = sorted(lat for at, lat in load.latencies if at >= restart.get("serving", killed))
    kinds = Counter(kind for _, kind in load.errors)

    def pct(values: list[float], p: int) -> float:
        if len(values) < 2:
            return values[0] * 1000 if values else float("nan")
        return 1000 * statistics.quantiles(values, n=100, method="inclusive")[p - 1]

    return {
        "system": web.name,
        "label": web.label,
        "requests_ok": sum(n for s, n in load.statuses.items() if 200 <= s < 300),
        "rate_steady": len(steady) / killed if killed else 0.0,
        "p50": pct(steady, 50),
        "p99": pct(steady, 99),
        "p50_after": pct(after, 50),
        "p99_after": pct(after, 99),
        "errors_steady": sum(1 for at, _ in load.errors if at < killed),
        "errors_restart": sum(1 for at, _ in load.errors if at >= killed),
        "error_kinds": dict(kinds),
        "error_kinds_steady": dict(Counter(kind for at, kind in load.errors if at < killed)),
        "downtime": restart.get("serving", killed) - killed,
        "acked": len(load.acked),
        "ran": sum(1 for k in ran if k in load.acked),
        "lost": len(load.acked - ran.keys()),
        "ran_twice": sum(1 for v in ran.values() if v > 1),
        "ran_unacked": sum(1 for k in ran if k not in load.acked),
        "drain_seconds": drained,
    }


# -- report --------------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> list[str]:
    head = [
        "System",
        "Requests/s before the kill",
        "Latency p50 [ms]",
        "Latency p99 [ms]",
        "Errors before the kill",
        "Errors around the restart",
        "Server back after [s]",
        "Jobs acknowledged",
        "Acknowledged, never ran",
        "Ran twice",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lost = f"**{r['lost']:,}**" if r["lost"] else "0"
        cells = [
            r["label"],
            f"{r['rate_steady']:,.0f}",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            f"{r['errors_steady']:,}",
            f"{r['errors_restart']:,}",
            f"{r['downtime']:.1f}",
            f"{r['acked']:,}",
            lost,
            f"{r['ran_twice']:,}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def section(data: dict[str, Any]) -> str:
    meta, rows = data["meta"], data["rows"]
    ns = meta["args"]
    capacity = 10 / ns["job_seconds"]
    kinds = "; ".join(
        f"{r['label']}: " + ", ".join(f"{k} x{v}" for k, v in r["error_kinds"].items())
        for r in rows
        if r["error_kinds"]
    )
    return "\n".join(
        [
            f"Measured on {meta['date']} in {meta['duration']}.",
            "",
            "```",
            meta["command"],
            "```",
            "",
            f"- {ns['clients']} clients on keep-alive connections, each posting a job, waiting "
            f"for the answer and pausing {ns['think']} s, for {ns['duration']} s; the slow job "
            f"blocks for {ns['job_seconds']} s, so 10 slots run at most {capacity:.0f} jobs/s: "
            "the offered load keeps the workers busy and the queue growing.",
            f"- At {ns['duration'] / 2:.0f} s the server process is killed (SIGKILL, its whole "
            "process group) and started again; clients reconnect. Workers are not touched.",
            "- Latency and requests/s are for the answered requests before the kill; errors are "
            "refused connections, resets and timeouts (10 s).",
            f"- Load average at the start: {', '.join(map(str, meta['load_start']))}; at the end: "
            f"{', '.join(map(str, meta['load_end']))}. The load generator shares the 2 cores with "
            "the server, the worker and Redis.",
            "",
            *table(rows),
            "",
            *([f"Errors by kind: {kinds}.", ""] if kinds else []),
        ]
    )


# -- main ----------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument(
        "--systems",
        default=",".join(BY_NAME),
        help=f"comma-separated subset of {','.join(BY_NAME)}",
    )
    p.add_argument("--clients", type=int, default=100, help="concurrent clients (100)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load (20)")
    p.add_argument(
        "--think",
        type=float,
        default=0.25,
        help="seconds each client pauses after an answer (0.25)",
    )
    p.add_argument(
        "--job-seconds", type=float, default=0.05, help="how long the slow job blocks (0.05)"
    )
    p.add_argument("--write-docs", action="store_true", help="write the section of docs/peers.md")
    p.add_argument(
        "--report-only",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the docs section from a results file",
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    ns = parse_args(argv)
    for venv in ("peers",) if ns.report_only else ("peers", "offload"):
        venvs.ensure(venv, venvs.base_python())
    if Path(sys.prefix).resolve() != venvs.VENVS["peers"].resolve():
        python = str(venvs.python("peers"))
        os.execv(python, [python, str(Path(__file__).resolve()), *argv])
    from datetime import UTC, datetime

    from peerbench import report
    from peerbench.redis_server import RedisServer

    if ns.report_only is not None:
        data = json.loads(ns.report_only.read_text())
        print("\n".join(table(data["rows"])))
        print(f"wrote {report.write_section('http', section(data))}", file=sys.stderr)
        return 0
    names = [s.strip() for s in ns.systems.split(",") if s.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown system(s) {unknown}; known: {', '.join(BY_NAME)}")
    folder = Path(tempfile.mkdtemp(prefix="offload-peers-http-"))
    load_start = [round(x, 2) for x in os.getloadavg()]
    began = time.monotonic()
    rows = []
    with RedisServer(folder) as server:
        for name in names:
            print(f"{name} ...", file=sys.stderr, flush=True)
            row = Scenario(BY_NAME[name], ns, folder, server).run()
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    seconds = round(time.monotonic() - began)
    data = {
        "meta": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "duration": f"{seconds // 60}m{seconds % 60:02d}s",
            "command": " ".join(["python", "benchmarks/peers/http_peers.py", *argv]),
            "args": vars(ns),
            "load_start": load_start,
            "load_end": [round(x, 2) for x in os.getloadavg()],
        },
        "rows": rows,
    }
    shutil.rmtree(folder, ignore_errors=True)
    out = venvs.HERE / "results" / "http.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print("\n".join(table(rows)))
    if ns.write_docs:
        print(f"wrote {report.write_section('http', section(data))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
