"""Tasks for the process executor tests; children load this module as ``proc_app:app``."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import offload

app = offload.App(backend="memory://")


@app.task(executor="process")
def next_day(when: datetime, label: str = "x") -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "decoded": type(when).__name__,
        "next": when + timedelta(days=1),
        "label": label,
    }


@app.task(executor="process")
def report(steps: int) -> str:
    for i in range(1, steps + 1):
        offload.current().progress(i / steps, f"step {i}")
    return "done"


@app.task(executor="process")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(executor="process")
def retry_later(delay: float) -> None:
    raise offload.Retry(delay=delay, reason="not yet")


@app.task(executor="process")
def give_up() -> None:
    offload.current().check_cancelled()
    raise offload.Cancelled("the task gave up")


@app.task(executor="process")
def not_json() -> object:
    return object()


@app.task(executor="process")
def spin() -> None:
    """Burn CPU forever, after saying which process does it."""
    offload.current().progress(None, str(os.getpid()))
    while True:
        pass


@app.task(executor="process")
def exit_now(code: int) -> None:
    os._exit(code)


@app.task(executor="process")
def sleep_in_group(pidfile: str) -> None:
    """Start ``sleep`` in its own process group; its pid lands in ``pidfile`` once it runs."""
    script = 'echo $$ > "$1.tmp" && mv "$1.tmp" "$1" && exec sleep 30'
    offload.run_process_sync(["sh", "-c", script, "sh", pidfile])


@app.task(executor="process")
def helper_in_group(pidfile: str) -> None:
    """A command that starts a helper of its own; ``pidfile`` gets "<pool child> <helper>"."""
    script = 'sleep 30 & echo "$PPID $!" > "$1.tmp" && mv "$1.tmp" "$1" && wait'
    offload.run_process_sync(["sh", "-c", script, "sh", pidfile])


@app.task(executor="process")
def meet(directory: str, hold: float) -> list[float]:
    """Wait until some other job has also started, hold on, and say when this one ran."""
    start = time.monotonic()
    folder = Path(directory)
    (folder / f"{os.getpid()}-{time.monotonic_ns()}").touch()
    deadline = start + 10
    while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(hold)
    return [os.getpid(), start, time.monotonic()]
