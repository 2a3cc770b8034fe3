"""``OffloadBackend``: offload as a backend of Django's tasks framework.

::

    TASKS = {
        "default": {
            "BACKEND": "offload.integrations.django.OffloadBackend",
            "QUEUES": ["default", "reports"],
            "OPTIONS": {"backend": "redis://localhost:6379/0"},
        }
    }

Jobs run on ``python manage.py offload_worker``. See docs/guide/django.md.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from offload.client import App, SubmitOptions
from offload.core.job import JobRecord, NewJob, Transition
from offload.errors import JobNotFound
from offload.integrations.django._compat import (
    BaseTaskBackend,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_backends,
    task_enqueued,
)
from offload.integrations.django.catalog import TaskCatalog
from offload.integrations.django.config import BackendConfig
from offload.integrations.django.results import META_KEY, make_result, to_task_result, when
from offload.loader import load_app


class OffloadBackend(BaseTaskBackend):
    """Enqueues Django tasks as offload jobs and reads their results back from offload."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.config = BackendConfig.from_options(alias, dict(self.options))
        self.app, self.catalog = _runtime(self.config)

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        """Check the task and its arguments, then submit the job: at once, or when the
        transaction in progress commits (never if it rolls back) with ``enqueue_on_commit``.

        :raises InvalidTaskError: the task does not fit this backend (see ``validate_task``).
        :raises TypeError: an argument is not a JSON value.
        :raises offload.InvalidArguments: the arguments do not fit the function's signature.
        """
        self.validate_task(task)
        normalize_json([args, kwargs])  # Django's own check and message, before offload's
        new = self.app.prepare(self.catalog.spec_for(task), args, kwargs, _options(task))
        result: TaskResult[Any] = make_result(
            task, new.id, TaskResultStatus.READY, args=args, kwargs=kwargs, backend=self.alias
        )
        submit = partial(self._submit, new, result)
        using = self.config.database
        if self.config.enqueue_on_commit and transaction.get_connection(using).in_atomic_block:
            transaction.on_commit(submit, using=using)
        else:  # (a project without a database never opens one here)
            submit()
        return result

    def _submit(self, new: NewJob, result: TaskResult[Any]) -> None:
        [job] = self.app.submit_many([new])
        object.__setattr__(result, "enqueued_at", when(job.record.created_at))
        task_enqueued.send(type(self), task_result=result)

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The task's result as offload has it now.

        :raises TaskResultDoesNotExist: no such job, or the job is not one of a Django task.
        """
        try:
            record, history = self.app.run_sync(_read(self.app, result_id))
        except JobNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        task = self.catalog.find(record.task)
        if task is None:
            raise TaskResultDoesNotExist(
                f"job {result_id} runs {record.task!r}, which is not a Django task"
            )
        run_after = (record.meta.get(META_KEY) or {}).get("run_after")
        task = task.using(
            priority=record.priority,
            queue_name=record.queue,
            run_after=when(run_after),
            backend=self.alias,
        )
        return to_task_result(task, record, history)  # type: ignore[no-any-return]


def offload_backend(alias: str) -> OffloadBackend:
    """The ``TASKS`` entry ``alias``, which must be an ``OffloadBackend``."""
    try:
        backend = task_backends[alias]
    except ImproperlyConfigured as exc:  # no such alias, or its BACKEND cannot be imported
        raise ValueError(
            f"no usable TASKS entry {alias!r} ({exc}); pass --alias with one of "
            f"{list(task_backends.settings)}"
        ) from None
    if not isinstance(backend, OffloadBackend):
        raise ValueError(
            f"TASKS[{alias!r}] is {type(backend).__module__}.{type(backend).__name__}; "
            "offload serves the tasks of an offload.integrations.django.OffloadBackend only"
        )
    return backend


def _options(task: Task[Any, Any]) -> SubmitOptions:
    run_after = task.run_after
    if run_after is not None and timezone.is_naive(run_after):
        run_after = timezone.make_aware(run_after)
    meta = {META_KEY: {"run_after": run_after.timestamp()}} if run_after is not None else None
    return SubmitOptions(priority=task.priority, queue=task.queue_name, run_at=run_after, meta=meta)


async def _read(app: App, job_id: str) -> tuple[JobRecord, list[Transition]]:
    record = await app.aget_record(job_id)
    return record, await (await app.backend()).history(job_id)


# Django builds one backend object per thread (and per settings change); they share one App,
# so a server with 40 threads keeps one portal thread and one set of backend connections.
_runtimes: dict[tuple[Any, ...], tuple[App, TaskCatalog]] = {}
_runtimes_lock = threading.Lock()


def _runtime(config: BackendConfig) -> tuple[App, TaskCatalog]:
    with _runtimes_lock:
        found = _runtimes.get(config.key())
        if found is None:
            app = _make_app(config)
            found = _runtimes[config.key()] = (app, TaskCatalog(app, config))
        return found


def _make_app(config: BackendConfig) -> App:
    """The offload App of a configuration: a new one, or the App named by ``app`` (so its own
    ``@app.task`` tasks and the Django tasks share one registry and one worker)."""
    return load_app(config.app) if config.app else App(config.backend)
