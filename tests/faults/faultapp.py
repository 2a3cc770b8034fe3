"""Tasks for the real-process fault tests; workers load this module as ``faultapp:app``.

The tests build their own App on the same tasks with :func:`build` (pointing at their own SQLite
file or Redis namespace) to submit and inspect jobs. Tasks leave evidence in files: every run of
``nap``/``anap`` writes ``<tag>.<run>.json`` with the pid of the worker process that ran it, so a
test can wait for "the job is running now, there" without sleeping.

``tally`` and its variants keep an execution ledger instead: every run appends a ``start``
line (job id, attempt, run number, pid, worker pid, time) and, unless its process dies first,
an ``end`` line (time, outcome: ``returned`` or ``cancelled``) to ``<ledger>/<pid>.jsonl``, a
file of the process that runs it, so a test can count how many times each job really ran, where
and when, without asking the backend. They sleep ``first`` seconds on a job's first run and
``later`` on every other. The variants cover every executor: ``tally`` (async),
``tally_thread``, ``tally_process`` (registered only where ``FAULTAPP_PROCESS=1``, so that other
workers start no process pool), and ``tally_cmd`` (``run_process``); the ``*_t`` names have a
1 s timeout.

``FAULTAPP_CLOCK_SKEW=SECONDS`` moves ``time.time()`` of the process that imports this module
(a worker) by that much: the worker's wall clock is wrong, everything else about it is normal.
Ledger times always come from the real clock.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import offload

#: The real wall clock, kept before any skew is installed.
REAL_TIME = time.time


def _install_clock_skew() -> None:
    skew = float(os.environ.get("FAULTAPP_CLOCK_SKEW") or 0)
    if skew:
        time.time = lambda: REAL_TIME() + skew
        print(f"faultapp: time.time() skewed by {skew:+g}s", file=sys.stderr, flush=True)


_install_clock_skew()


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


def _worker_pid() -> int:
    """The worker process that runs this job (a process-executor child's parent worker)."""
    parent = multiprocessing.parent_process()
    return os.getpid() if parent is None or parent.pid is None else parent.pid


def _ledger(ledger: str, event: str, **fields: Any) -> None:
    """Append one event of this run to the ledger of this process."""
    ctx = offload.current()
    entry = {
        "ev": event,
        "job": ctx.id,
        "attempt": ctx.attempt,
        "pid": os.getpid(),
        "worker": _worker_pid(),
        "at": REAL_TIME(),
        **fields,
    }
    with open(Path(ledger) / f"{os.getpid()}.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")  # one short write: lines never interleave


def _begin(ledger: str) -> int:
    """Record the start of this run; returns which run of its job it is (1 for the first).

    Runs are counted with one file per run, created exclusively, rather than by attempt: a
    graceful release refunds its attempt, but it was a run all the same.
    """
    runs = Path(ledger) / "runs"
    runs.mkdir(exist_ok=True)
    run = 1
    while True:
        try:
            os.close(os.open(runs / f"{offload.current().id}.{run}", os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            run += 1
    _ledger(ledger, "start", run=run)
    return run


async def tally(ledger: str, i: int, first: float = 0.0, later: float = 0.0) -> dict[str, int]:
    """Record this run in the ledger, then sleep ``first`` seconds on the job's first run, else
    ``later``."""
    run = _begin(ledger)
    try:
        await asyncio.sleep(first if run == 1 else later)
    except asyncio.CancelledError:
        _ledger(ledger, "end", outcome="cancelled")
        raise
    _ledger(ledger, "end", outcome="returned")
    return {"pid": os.getpid(), "i": i}


async def tally_until(ledger: str, i: int, flag: str) -> dict[str, int]:
    """The async ``tally`` that returns once the file ``flag`` exists (at once on a rerun, if it
    exists by then): a test decides when a run finishes."""
    _begin(ledger)
    try:
        while not os.path.exists(flag):  # noqa: ASYNC240 - one stat every 20 ms
            await asyncio.sleep(0.02)
    except asyncio.CancelledError:
        _ledger(ledger, "end", outcome="cancelled")
        raise
    _ledger(ledger, "end", outcome="returned")
    return {"pid": os.getpid(), "i": i}


def tally_thread(
    ledger: str, i: int, first: float = 0.0, later: float = 0.0, obey: bool = True
) -> dict[str, int]:
    """The thread ``tally``: waits on the job's cancel flag (``obey``), or ignores it in a plain
    ``time.sleep`` like most blocking code does."""
    seconds = first if _begin(ledger) == 1 else later
    if not obey:
        time.sleep(seconds)
    elif offload.current().wait_cancelled(seconds):
        _ledger(ledger, "end", outcome="cancelled")
        offload.current().check_cancelled()
    _ledger(ledger, "end", outcome="returned")
    return {"pid": os.getpid(), "i": i}


def tally_process(ledger: str, i: int, first: float = 0.0, later: float = 0.0) -> dict[str, int]:
    """The process ``tally``: runs in a child of the worker, killed on cancel and timeout."""
    time.sleep(first if _begin(ledger) == 1 else later)
    _ledger(ledger, "end", outcome="returned")
    return {"pid": os.getpid(), "i": i}


async def tally_cmd(ledger: str, i: int, first: float = 0.0, later: float = 0.0) -> dict[str, int]:
    """The ``run_process`` ``tally``: the run sleeps in a ``sleep`` command of its own group."""
    seconds = first if _begin(ledger) == 1 else later
    try:
        await offload.run_process(["sleep", str(seconds)], kill_grace=0.5)
    except asyncio.CancelledError:
        _ledger(ledger, "end", outcome="cancelled")
        raise
    _ledger(ledger, "end", outcome="returned")
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


def _orphan_command(pidfile: str, seconds: float = 60.0) -> list[str]:
    # The command writes its own pid, then becomes a sleep (exec keeps the pid).
    write = f"echo $$ > '{pidfile}.tmp'; mv '{pidfile}.tmp' '{pidfile}'"
    return ["sh", "-c", f"{write}; exec sleep {seconds}"]


async def chain_step(done: list[str], ledger: str, step: str, victim: str) -> list[str]:
    """One step of a three-command pipeline (the exam generator's shape, as a workflow chain).

    Its command writes its pid to ``<ledger>/<step>.<run>.pid`` and sleeps: 30 s on the first
    run of the ``victim`` step (its worker is killed meanwhile), 0.2 s otherwise.
    """
    run = _begin(ledger)
    seconds = 30.0 if step == victim and run == 1 else 0.2
    await offload.run_process(_orphan_command(f"{ledger}/{step}.{run}.pid", seconds))
    _ledger(ledger, "end", outcome="returned")
    return [*done, step]


async def orphan_cmd(pidfile: str) -> str:
    """A long ``run_process`` command from an async task (its worker is killed meanwhile)."""
    return (await offload.run_process(_orphan_command(pidfile))).stdout


def orphan_cmd_sync(pidfile: str) -> str:
    """The thread variant, through ``run_process_sync``."""
    return offload.run_process_sync(_orphan_command(pidfile)).stdout


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
    (orphan_cmd, {}),
    (orphan_cmd_sync, {}),
    (chain_step, {}),
    (poison, {}),
    (quick, {}),
    (tally, {}),
    (tally, {"name": "tally_t", "timeout": 1.0}),
    (tally_until, {}),
    (tally_thread, {}),
    (tally_thread, {"name": "tally_thread_t", "timeout": 1.0}),
    (tally_cmd, {}),
    (tally_cmd, {"name": "tally_cmd_t", "timeout": 1.0}),
]
#: Tasks of the process executor: a worker that has one starts a pool of child processes.
PROCESS_TASKS: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (tally_process, {}),
    (tally_process, {"name": "tally_process_t", "timeout": 1.0}),
    (nap, {"name": "nap_process"}),
    (orphan_cmd_sync, {"name": "orphan_process"}),
]


def build(backend: str | None = None, *, process: bool | None = None) -> offload.App:
    """An App with every task above (its backend: ``backend`` or ``$OFFLOAD_BACKEND``); the
    process tasks too if ``process`` (by default: if ``$FAULTAPP_PROCESS`` is 1)."""
    if process is None:
        process = os.environ.get("FAULTAPP_PROCESS") == "1"
    new = offload.App(backend)
    for func, options in TASKS + (PROCESS_TASKS if process else []):
        new.task(
            name=options.get("name", func.__name__),
            timeout=options.get("timeout"),
            executor="process" if (func, options) in PROCESS_TASKS else None,
        )(func)
    return new


app = build()
