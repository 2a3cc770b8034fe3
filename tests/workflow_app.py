"""Tasks for the workflow crash tests; worker processes load this module as
``workflow_app:app`` (the backend comes from ``OFFLOAD_BACKEND``).

Every run of a task appends one JSON line (tag, pid, attempt) to ``<ledger>/<pid>.jsonl``, so a
test can count how many times each step really ran. With ``WF_CRASH_TAGS=a,b`` the worker
SIGKILLs itself once per tag in the window that matters most: after a step's code succeeded,
before its success (and with it, its successors) is recorded (``<ledger>/crashed-<tag>`` says
it happened). With ``WF_STALL_TAGS=a`` the worker instead stalls there (``<ledger>/stalled-<tag>``
says it got there), for a test to kill it at its leisure.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import offload
from offload.worker.runner import JobRunner, Outcome, Running


def _log(ledger: str, tag: str) -> int:
    """Record one more run of ``tag``; return its number (1 for the first)."""
    folder = Path(ledger)
    runs = sum(
        json.loads(line)["tag"] == tag
        for path in folder.glob("*.jsonl")
        for line in path.read_text().splitlines()
        if line.endswith("}")
    )
    info = {"tag": tag, "pid": os.getpid(), "attempt": offload.current().attempt}
    with (folder / f"{os.getpid()}.jsonl").open("a") as out:
        out.write(json.dumps(info) + "\n")
    return runs + 1


def build(url: str | None = None) -> offload.App:
    app = offload.App(url)

    @app.task(name="step")
    def step(value: int, *, ledger: str, tag: str, nap_first: float = 0.0) -> int:
        """value + 1; sleeps ``nap_first`` seconds on its first run only."""
        if _log(ledger, tag) == 1:
            time.sleep(nap_first)
        return value + 1

    @app.task(name="fan")
    def fan(values: list[int], *, ledger: str, tag: str) -> list[int]:
        _log(ledger, tag)
        return values

    return app


app = build()


def _hook_before_recording(crash: set[str], stall: set[str]) -> None:
    original = JobRunner.record

    async def record(self: JobRunner, job: Running, outcome: Outcome) -> Outcome | None:
        kwargs: dict[str, Any] = job.record.kwargs
        tag, ledger = kwargs.get("tag"), kwargs.get("ledger")
        if outcome.kind == "succeeded" and tag in crash and ledger is not None:
            mark = Path(ledger) / f"crashed-{tag}"
            if not mark.exists():
                mark.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        if outcome.kind == "succeeded" and tag in stall and ledger is not None:
            (Path(ledger) / f"stalled-{tag}").write_text(str(os.getpid()))
            await asyncio.sleep(3600)  # the test kills the worker here
        return await original(self, job, outcome)

    JobRunner.record = record  # type: ignore[method-assign]


def _tags(name: str) -> set[str]:
    return {tag for tag in os.environ.get(name, "").split(",") if tag}


if os.environ.get("WF_CRASH_TAGS") or os.environ.get("WF_STALL_TAGS"):
    _hook_before_recording(_tags("WF_CRASH_TAGS"), _tags("WF_STALL_TAGS"))
