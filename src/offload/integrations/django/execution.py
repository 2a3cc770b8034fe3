"""How a worker runs a Django task: as Django's request cycle does, with fresh connections.

A worker thread lives for hours and runs thousands of jobs. Like a request, each job starts
and ends with ``close_old_connections()``, so a connection past ``CONN_MAX_AGE`` (by default:
every connection, at the end of the job) or broken by a database restart is closed, and the
next job opens a new one instead of failing on a stale one. ``reset_queries()`` keeps the
``DEBUG`` query log from growing across jobs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, reset_queries

from offload.integrations.django._compat import Task, TaskContext, normalize_json
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
        _job_starts()
        try:
            if task.takes_context:
                args = (_context(task), *args)
            return normalize_json(task.func(*args, **kwargs))
        finally:
            close_old_connections()

    return run


def _coroutine(task: Task[Any, Any]) -> Callable[..., Any]:
    async def run(*args: Any, **kwargs: Any) -> Any:
        # The ORM of async code runs in asgiref's thread: its connections are the ones to renew.
        await sync_to_async(_job_starts)()
        try:
            if task.takes_context:
                args = (await sync_to_async(_context)(task), *args)
            return normalize_json(await task.func(*args, **kwargs))
        finally:
            await sync_to_async(close_old_connections)()

    return run


def _job_starts() -> None:
    reset_queries()
    close_old_connections()


def _context(task: Task[Any, Any]) -> TaskContext:
    """The ``TaskContext`` of the running job: its result as the backend has it now."""
    return TaskContext(task_result=task.get_backend().get_result(current().id))


def _signature(task: Task[Any, Any]) -> inspect.Signature:
    params = list(inspect.signature(task.func).parameters.values())
    if task.takes_context:
        params = params[1:]
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in params]
    return inspect.Signature(bare)
