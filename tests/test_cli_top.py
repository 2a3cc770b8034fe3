"""``offload top``: one frame with ``--once``, read from a real SQLite store."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import pytest

from offload.cli import main
from offload.cli_top import Frame, read_frame, render, run
from offload.client import App
from offload.core.job import Lease, QueueStats, WorkerInfo
from offload.core.states import State


def _app(path: Path) -> App:
    app = App(f"sqlite:///{path / 'jobs.db'}")

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="mail", queue="emails")
    def mail(to: str) -> None:
        return None

    return app


async def _seed(app: App) -> None:
    """Two finished jobs (one failed), one running on worker w-1, one queued email."""
    backend = await app.backend()
    now = await backend.now()
    worker = WorkerInfo(
        id="w-1",
        name="box-1",
        host="box",
        pid=42,
        queues=["default"],
        concurrency=4,
        started_at=now,
        last_seen=now,
        running=0,
        processed=2,
    )
    await backend.heartbeat(worker, ttl=60)
    for n in range(3):
        await app.asubmit_name("add", [n, 1], {})
    done, failed, running = await backend.claim("w-1", {"default": 3}, 3, 30.0)
    await backend.complete(Lease(done.id, done.token), 1)
    await backend.fail(Lease(failed.id, failed.token), {"type": "Boom", "message": "boom"})
    await backend.progress(Lease(running.id, running.token), 0.5, "half")
    await app.asubmit_name("mail", ["a@b.c"], {})


def test_top_once_prints_queues_workers_and_rates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = _app(tmp_path)
    with app:
        app.run_sync(_seed(app))
    assert main(["top", "--once", "--backend", f"sqlite:///{tmp_path / 'jobs.db'}"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("offload top")
    assert "1 worker(s)" in lines[0]
    assert "1 jobs/min done" in lines[0]
    header = next(line for line in lines if line.startswith("QUEUE"))
    assert header.split() == [
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
    ]
    assert len(header) <= 80  # fits a terminal of 80 columns
    default = next(line for line in lines if line.startswith("default "))
    assert default.split()[1:8] == ["0", "0", "1", "1", "1", "1", "1"]
    emails = next(line for line in lines if line.startswith("emails "))
    assert emails.split()[1:8] == ["0", "1", "0", "0", "0", "0", "0"]
    assert default.split()[-1] == "-"  # nothing ready
    assert re.fullmatch(r"\d+ms|\d+\.\ds", emails.split()[-1])  # the email waits since its submit
    worker = next(line for line in lines if line.startswith("box-1"))
    assert re.search(r"1/4\s+2\s+\d+ms ago", worker), worker
    assert re.search(r"box-1: add \S+ \S+ 50%", out)
    assert "\x1b" not in out  # --once: no escapes


def test_top_on_an_empty_store_says_so(tmp_path: Path) -> None:
    frame = Frame(now=0.0, stats=[], workers=[])
    lines = render(frame)
    assert "(no jobs)" in lines
    assert "(no live workers)" in lines
    assert all(len(line) <= 100 for line in render(frame, width=100))


def test_top_redraws_until_cancelled(tmp_path: Path) -> None:
    app = _app(tmp_path)
    out = io.StringIO()

    async def two_frames() -> None:
        task = asyncio.create_task(run(app, interval=0.01, once=False, out=out, width=80))
        while out.getvalue().count("\x1b[H\x1b[2J") < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with app:
        app.run_sync(two_frames())
    assert out.getvalue().startswith("\x1b[H\x1b[2J")


def test_frame_counts_only_the_last_minute(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with app:
        app.run_sync(_seed(app))
        frame = app.run_sync(_read(app))
    assert frame.done["default"] == 1
    assert frame.failed["default"] == 1
    assert [j.status for j in frame.running["w-1"]] == [State.RUNNING]
    assert QueueStats in {type(s) for s in frame.stats}


async def _read(app: App) -> Frame:
    return await read_frame(await app.backend())


def test_interval_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    _app(tmp_path).run_sync(_noop())
    assert main(["top", "--once", "--interval", "0", "--backend", url]) == 1
    assert "--interval must be > 0" in capsys.readouterr().err


async def _noop() -> None:
    return None
