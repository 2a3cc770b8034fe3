"""``offload top``: a live terminal view of queues, workers and rates, like ``htop`` for jobs.

Each frame is read from the backend (counts by queue and state, live workers, the jobs that
finished in the last minute and those running now) and drawn as plain text; on a terminal the
screen is redrawn in place every ``--interval`` seconds with ANSI escapes, until Ctrl-C.
``--once`` prints one frame and exits (for scripts and tests). Listing jobs is bounded
(:data:`SCAN` jobs, newest first), so a frame stays cheap on a large store.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from offload.backends import Backend
from offload.client import App
from offload.core.job import JobFilter, JobRecord, QueueStats, WorkerInfo
from offload.core.states import State

#: jobs read per frame to find the last minute's finished jobs (newest first)
SCAN = 2000
#: the window of the rates, in seconds
RATE_WINDOW = 60.0
CLEAR = "\x1b[H\x1b[2J"
STATES = (State.SCHEDULED, State.QUEUED, State.RUNNING, State.SUCCEEDED, State.FAILED)


@dataclass
class Frame:
    """What one screen shows, read at ``now`` (the backend's clock)."""

    now: float
    stats: list[QueueStats]
    workers: list[WorkerInfo]
    running: dict[str | None, list[JobRecord]] = field(default_factory=dict)
    done: Counter[str] = field(default_factory=Counter)  # per queue, in the last minute
    failed: Counter[str] = field(default_factory=Counter)
    wait: dict[str, list[float]] = field(default_factory=dict)  # due -> started, per queue


async def _pages(backend: Backend, flt: JobFilter, cap: int) -> list[JobRecord]:
    jobs: list[JobRecord] = []
    while len(jobs) < cap:
        page = await backend.list_jobs(flt)
        jobs += page.jobs
        if page.next_cursor is None:
            break
        flt = JobFilter(status=flt.status, limit=flt.limit, cursor=page.next_cursor)
    return jobs[:cap]


async def read_frame(backend: Backend) -> Frame:
    """One frame's data from ``backend``."""
    now = await backend.now()
    frame = Frame(now=now, stats=await backend.stats(), workers=await backend.workers())
    running: dict[str | None, list[JobRecord]] = defaultdict(list)
    for job in await _pages(backend, JobFilter(status=State.RUNNING, limit=500), SCAN):
        running[job.worker_id].append(job)
    frame.running = dict(running)
    for job in await _pages(backend, JobFilter(limit=500), SCAN):
        if job.finished_at is None or job.finished_at < now - RATE_WINDOW:
            continue
        if job.status is State.SUCCEEDED:
            frame.done[job.queue] += 1
        elif job.status is State.FAILED:
            frame.failed[job.queue] += 1
        if job.started_at is not None:
            frame.wait.setdefault(job.queue, []).append(max(0.0, job.started_at - job.run_at))
    return frame


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.1f}s" if value < 120 else f"{value / 60:.0f}m"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]


def render(frame: Frame, title: str = "offload top", width: int = 100) -> list[str]:
    """The frame as lines of text, each cut to ``width`` characters."""
    clock = datetime.fromtimestamp(frame.now).strftime("%H:%M:%S")
    total_done = sum(frame.done.values())
    lines = [
        f"{title}  {clock}  {len(frame.workers)} worker(s)  "
        f"{total_done / RATE_WINDOW * 60:.0f} jobs/min done",
        "",
    ]
    rows = []
    for q in sorted(frame.stats, key=lambda s: s.queue):
        waits = frame.wait.get(q.queue, [])
        rows.append(
            (
                q.queue,
                *(str(q.count(s)) for s in STATES),
                str(frame.done[q.queue]),
                str(frame.failed[q.queue]),
                _seconds(sum(waits) / len(waits) if waits else None),
                _seconds(q.oldest_ready_age),
            )
        )
    header = (
        "QUEUE",
        "SCHED",
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "DONE/M",
        "FAIL/M",
        "WAIT",
        "AGE",
    )
    lines += _table(header, rows) if rows else ["(no jobs)"]
    lines.append("")
    lines += _workers(frame)
    return [line[:width] for line in lines]


def _workers(frame: Frame) -> list[str]:
    if not frame.workers:
        return ["(no live workers)"]
    rows = [
        (
            w.name,
            w.host,
            str(w.pid),
            ",".join(w.queues),
            f"{len(frame.running.get(w.id, []))}/{w.concurrency}",
            str(w.processed),
            _seconds(max(0.0, frame.now - w.last_seen)) + " ago",
        )
        for w in frame.workers
    ]
    header = ("WORKER", "HOST", "PID", "QUEUES", "RUNNING", "PROCESSED", "HEARTBEAT")
    lines = _table(header, rows)
    for w in frame.workers:
        for job in frame.running.get(w.id, [])[:5]:
            progress = "" if job.progress is None else f" {job.progress * 100:.0f}%"
            age = _seconds(frame.now - job.started_at) if job.started_at else "-"
            lines.append(f"  {w.name}: {job.task} {job.id} {age}{progress}")
    return lines


async def run(app: App, *, interval: float, once: bool, out: TextIO, width: int) -> None:
    """Draw frames on ``out``: one with ``once``, else until cancelled."""
    backend = await app.backend()
    title = f"offload top  {app.settings.backend}"
    while True:
        lines = render(await read_frame(backend), title, width)
        if once:
            out.write("\n".join(lines) + "\n")
            return
        out.write(CLEAR + "\n".join(lines) + "\n")
        out.flush()
        await asyncio.sleep(interval)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    backend_options: Callable[[argparse.ArgumentParser], None],
    app_for: Callable[[argparse.Namespace], App],
) -> None:
    """Add ``offload top`` to the CLI's subcommands."""
    p = sub.add_parser("top", help="a live view of queues, workers and rates")
    backend_options(p)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between frames (2)")
    p.add_argument("--once", action="store_true", help="print one frame and exit")

    def top(ns: argparse.Namespace) -> int:
        if ns.interval <= 0:
            raise ValueError("--interval must be > 0 seconds")
        width = 200 if not sys.stdout.isatty() else _terminal_width()
        with app_for(ns) as app:
            app.run_sync(run(app, interval=ns.interval, once=ns.once, out=sys.stdout, width=width))
        return 0

    p.set_defaults(func=top)


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size().columns
