"""Tasks for the real-process fault tests; workers load this module as ``faultapp:app``.

The tests build their own App on the same tasks with :func:`build` (pointing at their own SQLite
file or Redis namespace) to submit and inspect jobs. Tasks leave evidence in files: every run of
``nap``/``anap`` writes ``<tag>.<run>.json`` with the pid of the worker process that ran it, so a
test can wait for "the job is running now, there" without sleeping.

``tally`` keeps an execution ledger instead: every run appends one JSON line (job id, attempt,
pid, start time) to ``<ledger>/<pid>.jsonl``, a file of the worker process's own, so a test can
count how many times each job really ran, and where, without asking the backend.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import offload


def _start_marker(marks: str, tag: str) -> int:
    """Record one more run of job ``tag`` and return its number (1 for the first run)."""
    folder = Path(marks)
    run = len(list(folder.glob(f"{tag}.*.json"))) + 1
    info = {"pid": os.getpid(), "attempt": offload.current().attempt, "run": run}
    tmp = folder / f".{tag}.{run}.tmp"
    tmp.write_text(json.dumps(info))
    tmp.rename(folder / f"{tag}.{run}.json")  # atomic: readers never see half a file
    return run


def nap(marks: str, tag: str, first: float, later: float = 0.0) -> dict[str, Any]:
    """Sleep ``first`` seconds on the job's first run and ``later`` on every other run.

    A plain ``time.sleep``: it ignores cancellation like most blocking code does.
    """
    run = _start_marker(marks, tag)
    time.sleep(first if run == 1 else later)
    return {"pid": os.getpid(), "run": run}


async def anap(marks: str, tag: str, first: float, later: float = 0.0) -> dict[str, Any]:
    """The async ``nap``: ``asyncio.sleep`` on the worker's loop."""
    run = _start_marker(marks, tag)
    await asyncio.sleep(first if run == 1 else later)
    return {"pid": os.getpid(), "run": run}


async def loop_blocker(marks: str, tag: str, seconds: float, spin: bool = False) -> dict[str, Any]:
    """An async task that wrongly blocks its event loop for ``seconds``: in ``time.sleep``, or
    (``spin``) in a pure-Python loop that holds the GIL."""
    run = _start_marker(marks, tag)
    if spin:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
    else:
        time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point of this task
    return {"pid": os.getpid(), "run": run}


def _append_to_ledger(ledger: str) -> int:
    """Append this run to the ledger of this process; returns the job's attempt number."""
    ctx = offload.current()
    entry = {"job": ctx.id, "attempt": ctx.attempt, "pid": os.getpid(), "at": time.time()}
    with open(Path(ledger) / f"{os.getpid()}.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")  # one short write: lines never interleave
    return ctx.attempt


async def tally(ledger: str, i: int, first: float = 0.0, later: float = 0.0) -> dict[str, int]:
    """Record this run in the ledger, then sleep ``first`` seconds on attempt 1, else ``later``."""
    attempt = _append_to_ledger(ledger)
    await asyncio.sleep(first if attempt == 1 else later)
    return {"pid": os.getpid(), "i": i}


def _grandchild_command(pidfile: str) -> list[str]:
    # sh (the group leader) starts a grandchild, writes its pid, and waits for it.
    return ["sh", "-c", f"sleep 60 & echo $! > '{pidfile}'; wait"]


def grandchild(pidfile: str) -> str:
    """A thread task whose command leaves a grandchild running (``run_process_sync``)."""
    done = offload.run_process_sync(_grandchild_command(pidfile), kill_grace=0.5)
    return done.stdout


async def agrandchild(pidfile: str) -> str:
    """The async variant, through ``run_process``."""
    done = await offload.run_process(_grandchild_command(pidfile), kill_grace=0.5)
    return done.stdout


def poison() -> None:
    """Kill the worker process that runs this job."""
    os.kill(os.getpid(), signal.SIGKILL)


async def quick(i: int) -> dict[str, int]:
    await asyncio.sleep(0.01)
    return {"pid": os.getpid(), "i": i}


TASKS: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (nap, {}),
    (anap, {}),
    (loop_blocker, {}),
    (grandchild, {}),
    (agrandchild, {}),
    (grandchild, {"name": "grandchild_timeout", "timeout": 1.0}),
    (agrandchild, {"name": "agrandchild_timeout", "timeout": 1.0}),
    (poison, {}),
    (quick, {}),
    (tally, {}),
]


def build(backend: str | None = None) -> offload.App:
    """An App with every task above (its backend: ``backend`` or ``$OFFLOAD_BACKEND``)."""
    new = offload.App(backend)
    for func, options in TASKS:
        new.task(name=options.get("name", func.__name__), timeout=options.get("timeout"))(func)
    return new


app = build()
