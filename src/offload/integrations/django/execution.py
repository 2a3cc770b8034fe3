"""How a worker runs a Django task: as Django's request cycle does, with fresh connections.

A worker thread lives for hours and runs thousands of jobs. Like a request, each job starts
and ends with ``close_old_connections()``, so a connection past ``CONN_MAX_AGE`` (by default:
every connection, at the end of the job) or broken by a database restart is closed, and the
next job opens a new one instead of failing on a stale one. ``reset_queries()`` keeps the
``DEBUG`` query log from growing across jobs.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, reset_queries
from django.utils import timezone

from offload.integrations.django._compat import (
    Task,
    TaskContext,
    TaskError,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)
from offload.worker.context import current


def job_function(task: Task[Any, Any]) -> Callable[..., Any]:
    """The function offload runs for ``task``: a coroutine function for an ``async def`` task.

    Its signature is the task's, without ``context`` and without annotations, so offload checks
    the arguments' shape at enqueue and hands the task the JSON values as Django does.
    """
    run = _coroutine(task) if inspect.iscoroutinefunction(task.func) else _function(task)
    run.__signature__ = _signature(task)  # type: ignore[attr-defined]
    run.__name__ = task.func.__name__
    run.__qualname__ = task.func.__qualname__
    run.__module__ = task.func.__module__
    run.__doc__ = task.func.__doc__
    run.django_task = task  # type: ignore[attr-defined]
    return run


def django_task_of(func: Callable[..., Any]) -> Task[Any, Any] | None:
    """The Django task a function made by :func:`job_function` runs, else None."""
    found = getattr(func, "django_task", None)
    return found if isinstance(found, Task) else None


def _function(task: Task[Any, Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        result = _begin(task)
        try:
            if task.takes_context:
                args = (TaskContext(task_result=result), *args)
            value = normalize_json(task.func(*args, **kwargs))
        except BaseException as exc:
            _end(task, result, error=exc)
            raise
        _end(task, result, value=value)
        return value

    return run


def _coroutine(task: Task[Any, Any]) -> Callable[..., Any]:
    # The ORM of async code runs in asgiref's thread: its connections are the ones to renew.
    begin, end = sync_to_async(_begin), sync_to_async(_end)

    async def run(*args: Any, **kwargs: Any) -> Any:
        result = await begin(task)
        try:
            if task.takes_context:
                args = (TaskContext(task_result=result), *args)
            value = normalize_json(await task.func(*args, **kwargs))
        except BaseException as exc:
            await end(task, result, error=exc)
            raise
        await end(task, result, value=value)
        return value

    return run


def _begin(task: Task[Any, Any]) -> Any:
    """Start a run as a request starts: fresh connections. Then, when the task takes its
    context or someone listens to ``task_started``/``task_finished``, read the job's result
    (one read of the backend) and send ``task_started``; else None."""
    reset_queries()
    close_old_connections()
    if not (task.takes_context or task_started.has_listeners() or task_finished.has_listeners()):
        return None
    backend = task.get_backend()
    result = backend.get_result(current().id)
    task_started.send(type(backend), task_result=result)
    return result


def _end(
    task: Task[Any, Any], result: Any, *, value: Any = None, error: BaseException | None = None
) -> None:
    """End a run as a request ends (old connections closed); send ``task_finished`` with the
    run's outcome when :func:`_begin` read the result."""
    close_old_connections()
    if result is None:
        return
    object.__setattr__(result, "finished_at", timezone.now())
    if error is None:
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
    else:
        kind = type(error)
        result.errors.append(
            TaskError(
                exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                traceback="".join(traceback.format_exception(error)),
            )
        )
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
    task_finished.send(type(task.get_backend()), task_result=result)


def _signature(task: Task[Any, Any]) -> inspect.Signature:
    params = list(inspect.signature(task.func).parameters.values())
    if task.takes_context:
        params = params[1:]
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in params]
    return inspect.Signature(bare)
