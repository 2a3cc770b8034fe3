"""Terminal output and argument parsing helpers for the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from offload.cli_progress import ProgressView
from offload.core import validate
from offload.core.job import JobRecord, Transition
from offload.errors import ConfigurationError, WaitTimeout
from offload.jobs import Job


def parse_value(text: str) -> Any:
    """A JSON value if the text is one (``42``, ``true``, ``[1]``), else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def parse_keyword(item: str) -> tuple[str, Any]:
    name, sep, value = item.partition("=")
    if not sep or not name.isidentifier():
        raise ConfigurationError(f"keyword argument {item!r} must look like name=value")
    return name, parse_value(value)


def parse_queues(text: str) -> dict[str, int | None]:
    """``"pdf:2,default"`` -> ``{"pdf": 2, "default": None}``."""
    queues: dict[str, int | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, cap = part.partition(":")
        validate.queue_name(name)
        if cap and (not cap.isdigit() or int(cap) < 1):
            raise ConfigurationError(f"queue limit in {part!r} must be a positive whole number")
        queues[name] = int(cap) if cap else None
    if not queues:
        raise ConfigurationError("--queues needs at least one queue name")
    return queues


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _record_json(rec: JobRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "task": rec.task,
        "queue": rec.queue,
        "status": rec.status.value,
        "args": rec.args,
        "kwargs": rec.kwargs,
        "attempts": rec.attempts,
        "progress": rec.progress,
        "progress_message": rec.progress_message,
        "result": rec.result,
        "error": rec.error,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
    }


def show_job(
    rec: JobRecord, *, as_json: bool, brief: bool = False, history: list[Transition] | None = None
) -> None:
    if as_json:
        print(orjson.dumps(_record_json(rec), option=orjson.OPT_INDENT_2).decode())
        return
    if brief:
        print(f"{rec.id} {rec.status.value}")
        return
    rows = [
        ("id", rec.id),
        ("task", rec.task),
        ("queue", rec.queue),
        ("status", rec.status.value),
        ("attempts", str(rec.attempts)),
        ("created", _when(rec.created_at)),
        ("started", _when(rec.started_at)),
        ("finished", _when(rec.finished_at)),
    ]
    if rec.progress is not None or rec.progress_message:
        rows.append(("progress", f"{(rec.progress or 0) * 100:.0f}% {rec.progress_message or ''}"))
    if rec.result is not None:
        rows.append(("result", orjson.dumps(rec.result).decode()))
    if rec.error:
        rows.append(("error", f"{rec.error.get('type')}: {rec.error.get('message')}"))
    for key, value in rows:
        print(f"{key:>9}  {value}")
    for t in history or []:
        before = t.from_status.value if t.from_status else "new"
        print(
            f"{'':>9}  {_when(t.at)}  {before} -> {t.to_status.value} ({t.reason.value}, "
            f"attempt {t.attempt}{', ' + t.detail if t.detail else ''})"
        )


def show_table(records: list[JobRecord], *, as_json: bool) -> None:
    if as_json:
        print(orjson.dumps([_record_json(r) for r in records]).decode())
        return
    header = ("ID", "TASK", "QUEUE", "STATUS", "ATTEMPTS", "CREATED")
    rows = [
        (r.id, r.task, r.queue, r.status.value, str(r.attempts), _when(r.created_at))
        for r in records
    ]
    _print_rows(header, rows)
    if not rows:
        print("(no jobs)")


def _print_rows(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def show_schedules(schedules: list[dict[str, Any]], *, as_json: bool) -> None:
    """Rows of ``describe_schedules``: one line each, next ticks in UTC."""
    if as_json:
        print(orjson.dumps(schedules).decode())
        return
    header = ("TASK", "QUEUE", "SCHEDULE", "NEXT TICK (UTC)", "MISSED")
    rows = [
        (
            s["name"],
            s["queue"],
            s["schedule"],
            datetime.fromisoformat(s["next_tick"]).strftime("%Y-%m-%d %H:%M:%S"),
            s["missed"],
        )
        for s in schedules
    ]
    _print_rows(header, rows)
    if not rows:
        print("(no schedules)")


async def follow(job: Job, timeout: float | None, view: ProgressView | None = None) -> None:
    """Wait for a job, showing its progress on stderr (see :mod:`offload.cli_progress`)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    view = view if view is not None else ProgressView()
    try:
        while not job.record.is_terminal:
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeout(f"job {job.id} is still {job.status.value} after {timeout:g}s")
            view.update(job.record)
            await asyncio.sleep(0.1)
            await job.arefresh()
        view.update(job.record)
    finally:
        view.close()
