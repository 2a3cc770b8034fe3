"""offload's job record and history, read as a Django ``TaskResult``. No I/O here.

=================================  ==========================================================
offload                            ``TaskResult``
=================================  ==========================================================
``scheduled``, ``queued``          ``READY`` (waiting for ``run_after``, a retry, or a worker)
``running``                        ``RUNNING``
``succeeded``                      ``SUCCESSFUL``; ``return_value`` is the job's result
``failed``                         ``FAILED``
``cancelled``                      ``FAILED`` (Django has no cancelled state); its last error
                                   names ``offload.errors.JobCancelled``
``created_at``                     ``enqueued_at``
first / latest claim               ``started_at`` / ``last_attempted_at``
claims' worker ids                 ``worker_ids`` (so ``attempts`` counts the runs)
each failed run                    one ``TaskError`` in ``errors``, oldest first
=================================  ==========================================================
"""

from __future__ import annotations

import builtins
import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

from offload.core.job import JobRecord, Transition
from offload.core.states import Reason, State
from offload.integrations.django._compat import Task, TaskError, TaskResult, TaskResultStatus

STATUSES = {
    State.SCHEDULED: TaskResultStatus.READY,
    State.QUEUED: TaskResultStatus.READY,
    State.RUNNING: TaskResultStatus.RUNNING,
    State.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    State.FAILED: TaskResultStatus.FAILED,
    State.CANCELLED: TaskResultStatus.FAILED,
}
#: Moves that end a run with an error (a release on shutdown or a lost lease is no error).
FAILED_RUN = frozenset({Reason.FAILED, Reason.RETRY, Reason.TIMEOUT, Reason.WORKER_LOST})
CANCELLED_PATH = "offload.errors.JobCancelled"
#: The name of this job's Django backend alias and its run_after, kept in the job's meta.
META_KEY = "django"


def when(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC)


def make_result(task: Task[Any, Any], job_id: str, status: Any, **values: Any) -> Any:
    """A ``TaskResult`` with the fields this Django version defines (newer ones add some)."""
    known = {f.name for f in dataclasses.fields(TaskResult) if f.init}
    defaults: dict[str, Any] = {
        "enqueued_at": None,
        "started_at": None,
        "finished_at": None,
        "last_attempted_at": None,
        "args": [],
        "kwargs": {},
        "backend": task.backend,
        "errors": [],
        "worker_ids": [],
        "metadata": {},
        "raw_metadata": {},
    }
    fields = {**defaults, **values, "task": task, "id": job_id, "status": status}
    return TaskResult(**{k: v for k, v in fields.items() if k in known})


def to_task_result(task: Task[Any, Any], record: JobRecord, history: list[Transition]) -> Any:
    """The ``TaskResult`` of ``task`` that ``record`` and its ``history`` describe."""
    claims = [t for t in history if t.reason is Reason.CLAIMED]
    result = make_result(
        task,
        record.id,
        STATUSES[record.status],
        enqueued_at=when(record.created_at),
        started_at=when(claims[0].at) if claims else None,
        last_attempted_at=when(claims[-1].at) if claims else None,
        finished_at=when(record.finished_at),
        args=record.args,
        kwargs=record.kwargs,
        errors=task_errors(record, history),
        worker_ids=[t.worker_id or "" for t in claims],
    )
    if record.status is State.SUCCEEDED:
        object.__setattr__(result, "_return_value", record.result)
    return result


def task_errors(record: JobRecord, history: list[Transition]) -> list[Any]:
    """One ``TaskError`` per failed run, oldest first. offload keeps the class and traceback of
    the latest error only; earlier runs carry the message their history entry recorded."""
    errors = [
        TaskError(exception_class_path=path_of(None, t.detail), traceback=t.detail or "")
        for t in history
        if t.reason in FAILED_RUN
    ]
    last = record.error
    if record.status is State.CANCELLED:
        text = (last or {}).get("message") or f"job {record.id} was cancelled"
        errors.append(TaskError(exception_class_path=CANCELLED_PATH, traceback=text))
    elif last is not None and (errors or record.status is State.FAILED):
        text = last.get("traceback") or last.get("message") or ""
        full = TaskError(exception_class_path=path_of(last.get("type"), text), traceback=text)
        errors[-1:] = [full]
    return errors


def path_of(name: str | None, text: str | None) -> str:
    """The dotted path of an exception class, read from its traceback's last line (Python
    prints ``module.Class: message`` for every class outside ``builtins``)."""
    if name is None:
        return "builtins.Exception"
    pattern = re.compile(rf"^((?:\w+\.)*){re.escape(name)}(?::|$)")
    for line in reversed((text or "").splitlines()):
        found = pattern.match(line)
        if found and found.group(1):
            return found.group(0).rstrip(":")
    if isinstance(getattr(builtins, name, None), type):
        return f"builtins.{name}"
    return name
