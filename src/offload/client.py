"""What web code imports: the App, its tasks, and handles on jobs. Sync and async faces.

Every operation is written once; the synchronous methods run its coroutine on a private loop
(see ``_portal``; a sync submit to Redis sends its one script call from the calling thread), so
Flask views, scripts and the CLI get the same behaviour as ``async def`` endpoints.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from datetime import timedelta, tzinfo
from functools import partial
from typing import Any, ParamSpec, TypeVar, Unpack, overload

from offload._portal import Portal, before_interpreter_exit
from offload.backends import Backend, open_backend
from offload.backends.base import BlockingSubmit
from offload.core.job import MAX_PAGE, JobFilter, JobRecord, NewJob
from offload.core.options import PeriodicKeywords, TaskKeywords, TaskOptions
from offload.core.options import SubmitOptions as SubmitOptions
from offload.core.registry import TaskRegistry
from offload.core.retention import RetentionPolicy
from offload.core.schedule import (
    MissedPolicy,
    Schedule,
    check_missed,
    check_no_arguments,
    make_trigger,
)
from offload.core.states import State
from offload.core.task import TaskSpec
from offload.errors import BackendUnavailable, InvalidTransition, JobNotFound, OffloadError
from offload.jobs import Job
from offload.settings import Settings
from offload.submission import prepare_job
from offload.tasks import Task as Task
from offload.workflows import submit as workflows
from offload.workflows.canvas import Flow
from offload.workflows.handle import Workflow

_NO_OPTIONS = SubmitOptions()
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class App:
    """The registry of tasks plus the backend they are submitted to.

    ``backend`` is a URL (``sqlite:///offload.db``, ``redis://...``, ``memory://``) or a Backend
    object; by default ``$OFFLOAD_BACKEND``, else ``sqlite:///offload.db``.
    """

    def __init__(
        self,
        backend: str | Backend | None = None,
        *,
        settings: Settings | None = None,
        tracing: bool | None = None,
    ):
        base = (settings or Settings.from_env()).with_(tracing=tracing)
        if isinstance(backend, str):
            base = base.with_(backend=backend)
        self.settings = base
        self.registry = TaskRegistry()
        self.schedules: dict[str, Schedule] = {}  # periodic tasks, by name (= the task's name)
        self._shared: Backend | None = None if isinstance(backend, str | None) else backend
        if self._shared is None and base.backend.startswith("memory:"):
            self._shared = open_backend(base.backend)  # one private store, shared by its users
        self._backends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[Backend]]
        self._backends = weakref.WeakKeyDictionary()
        self._portal: Portal | None = None
        self._portal_lock = threading.Lock()
        self._blocking: tuple[Portal | None, BlockingSubmit | None] = (None, None)
        self._closes_at_exit = False

    # -- declaring tasks -----------------------------------------------------------------------
    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self, func: None = None, /, **options: Unpack[TaskKeywords]
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...
    def task(
        self, func: Callable[P, R] | None = None, /, **options: Unpack[TaskKeywords]
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task; use bare (``@app.task``) or with options.

        The options (``name``, ``queue``, ``executor``, ``retries``, ``retry_backoff``,
        ``retry_backoff_max``, ``timeout``, ``priority``, ``result_ttl``, ``concurrency``,
        ``key_concurrency``, ``rate_limit``, ``key_rate_limit``, ``retention``) are described,
        with their defaults, by :class:`offload.core.options.TaskOptions`.
        """
        declared = TaskOptions.of("App.task", options, TaskKeywords)
        return (
            self._register(declared, func)
            if func is not None
            else partial(self._register, declared)
        )

    def _register(self, options: TaskOptions, fn: Callable[P, R]) -> Task[P, R]:
        spec = options.spec(fn)
        spec.check_annotations()
        self.registry.add(spec)
        return Task(self, spec)

    def periodic(
        self,
        cron: str | None = None,
        /,
        *,
        every: timedelta | None = None,
        tz: str | tzinfo | None = None,
        missed: MissedPolicy = "skip",
        **options: Unpack[PeriodicKeywords],
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register a task that workers run on a schedule, once per tick across all of them.

        ``cron`` is a 5-field expression read in ``tz`` (default UTC); ``every`` a whole number
        of seconds, counted from the Unix epoch. ``missed`` says what a starting worker does
        about ticks that passed while no worker ran: "skip" them, or run "once" for the latest.
        The other options are those of :meth:`task` but the per-key limits (``concurrency=1``:
        a tick does not start while the last one still runs); the task can also be submitted
        by hand.
        """
        declared = TaskOptions.of("App.periodic", options, PeriodicKeywords)
        trigger = make_trigger(cron, every, tz)
        policy = check_missed(missed)

        def register(fn: Callable[P, R]) -> Task[P, R]:
            task_name = declared.name or fn.__qualname__
            if task_name in self.schedules:
                raise ValueError(f"a schedule named {task_name!r} already exists; pass name=...")
            check_no_arguments(fn, task_name)
            task = self._register(declared.replace(name=task_name), fn)
            self.schedules[task_name] = Schedule(task_name, task.spec.queue, trigger, policy)
            return task

        return register

    # -- backend access ------------------------------------------------------------------------
    def new_backend(self) -> Backend:
        """A fresh, unopened backend for this app (the shared object if one was given)."""
        if self._shared is not None:
            return self._shared
        return open_backend(self.settings.backend, strict=self.settings.strict)

    async def backend(self) -> Backend:
        """The opened backend bound to the running event loop."""
        loop = asyncio.get_running_loop()
        opening = self._backends.get(loop)
        if opening is None:
            opening = loop.create_task(self._open_backend())
            self._backends[loop] = opening
        try:
            return await asyncio.shield(opening)
        except Exception:
            if self._backends.get(loop) is opening:
                del self._backends[loop]  # let the next call try again
            raise

    async def _open_backend(self) -> Backend:
        await (backend := self.new_backend()).open()
        return backend

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one of this app's coroutines from synchronous code (any thread, or any greenlet
        under gevent's monkey patching)."""
        portal = self._portal
        if portal is None or portal.pid != os.getpid():
            portal = self._start_portal()
        return portal.call(coro)

    def _start_portal(self) -> Portal:
        with self._portal_lock:  # threads (or greenlets) racing here share one portal
            if self._portal is None or self._portal.pid != os.getpid():
                self._portal = Portal()  # one inherited through fork() has no thread here
                if self._portal.green and not self._closes_at_exit:
                    before_interpreter_exit(self.close)  # else gevent's exit would hang
                    self._closes_at_exit = True
            return self._portal

    async def aclose(self) -> None:
        """Close the backend of the running loop (call at the end of your app's lifespan)."""
        opening = self._backends.pop(asyncio.get_running_loop(), None)
        if opening is not None and self._shared is None:
            await (await opening).close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the backend used by the synchronous methods."""
        portal, self._portal = self._portal, None
        if portal is not None and portal.pid == os.getpid():
            portal.call(self.aclose())
            portal.close()

    # -- submitting ----------------------------------------------------------------------------
    def prepare(
        self,
        task: str | TaskSpec,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        options: SubmitOptions | None = None,
    ) -> NewJob:
        """Validate and encode a submission of ``task`` (a registered name, or the spec of one);
        raises before anything is stored. With :meth:`asubmit_many`, the one submit path: every
        submitting caller (tasks, the HTTP routes, the Flask and Django integrations, the
        scheduler) goes through here."""
        spec = self.registry.get(task) if isinstance(task, str) else task
        return prepare_job(spec, args, kwargs or {}, options or _NO_OPTIONS, self.settings)

    async def asubmit_name(
        self,
        task: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        options: SubmitOptions | None = None,
    ) -> Job:
        """Submit a registered task by name (what the CLI and HTTP API do)."""
        [job] = await self.asubmit_many([self.prepare(task, args or [], kwargs, options)])
        return job

    async def asubmit_many(self, jobs: list[NewJob]) -> list[Job]:
        """Store many prepared jobs at once, all or none (Redis chunks: docs/reliability.md)."""
        records = await (await self.backend()).submit(jobs)
        return [Job(self, r) for r in records]

    def submit_many(self, jobs: list[NewJob]) -> list[Job]:
        """Synchronous :meth:`asubmit_many`; on the calling thread if the backend can (Redis)."""
        portal, backend = self._blocking  # the BlockingSubmit opened by this portal, if any
        if portal is None or portal is not self._portal or portal.pid != os.getpid():
            opened: object = self.run_sync(self.backend())  # starts the portal, opens it
            backend = opened if isinstance(opened, BlockingSubmit) else None  # checked once
            self._blocking = (self._portal, backend)
        if backend is None or len(jobs) > backend.blocking_max:
            return self.run_sync(self.asubmit_many(jobs))
        return [Job(self, r) for r in backend.submit_blocking(jobs)]

    async def aping(self) -> None:
        """Readiness: return once the backend answers a ping; raise
        :class:`~offload.BackendUnavailable` when it does not (the integrations' error
        handlers answer that with 503 and ``Retry-After``). For the app's own health route."""
        try:
            await (await self.backend()).ping()
        except OffloadError:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"the backend does not answer a ping: {exc!r}") from exc

    def ping(self) -> None:
        """:meth:`aping` from synchronous code (a Flask view, a gunicorn worker)."""
        self.run_sync(self.aping())

    async def anow(self) -> float:
        """The backend's clock (epoch seconds): the time ticks and due times are read from."""
        return await (await self.backend()).now()

    # -- workflows (offload.workflows.submit) ------------------------------------------------------
    async def asubmit_workflow(
        self, flow: Flow, *, tenant: str | None = None, meta: dict[str, Any] | None = None
    ) -> Workflow:
        """Check and store a workflow: its first steps are committed before it returns.

        ``flow`` is a signature, ``chain(...)`` or ``group(...)``. Every step is checked first
        (registered task, arguments that fit); ``meta`` is added to every step's job.
        """
        return await workflows.asubmit_workflow(self, flow, tenant=tenant, meta=meta)

    def submit_workflow(
        self, flow: Flow, *, tenant: str | None = None, meta: dict[str, Any] | None = None
    ) -> Workflow:
        """Synchronous ``asubmit_workflow``. Steps are checked before anything is stored."""
        return self.run_sync(self.asubmit_workflow(flow, tenant=tenant, meta=meta))

    async def aworkflow(self, workflow_id: str) -> Workflow:
        """The workflow with this id (its first step's job id), from any process."""
        return await workflows.aload_workflow(self, workflow_id)

    def workflow(self, workflow_id: str) -> Workflow:
        return self.run_sync(self.aworkflow(workflow_id))

    # -- reading and acting on jobs ------------------------------------------------------------
    async def aget_record(self, job_id: str) -> JobRecord:
        record = await (await self.backend()).get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    async def aget_job(self, job_id: str) -> Job:
        return Job(self, await self.aget_record(job_id))

    def get_job(self, job_id: str) -> Job:
        return self.run_sync(self.aget_job(job_id))

    async def ajobs(
        self,
        *,
        status: State | str | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        flt = JobFilter(
            status=State(status) if status else None, task=task, queue=queue, limit=limit
        )
        page = await (await self.backend()).list_jobs(flt)
        return [Job(self, r) for r in page.jobs]

    def jobs(
        self,
        *,
        status: State | str | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        return self.run_sync(self.ajobs(status=status, task=task, queue=queue, limit=limit))

    async def acancel(self, job_id: str) -> Job:
        return Job(self, await (await self.backend()).cancel(job_id))

    def cancel(self, job_id: str) -> Job:
        return self.run_sync(self.acancel(job_id))

    async def aretry(
        self, job_id: str, *, meta: dict[str, Any] | None = None, once: bool = False
    ) -> Job:
        """Run a failed or cancelled job again, as a new job that points back to it.

        ``meta`` entries (say a new ``request_id``) are laid over the old job's meta. With
        ``once``, retrying the same job again within 24 hours returns the first retry instead
        of making another (what bulk retries use, so a repeated command runs nothing twice).
        """
        old = await self.aget_record(job_id)
        if old.status not in (State.FAILED, State.CANCELLED):
            raise InvalidTransition(job_id, old.status.value, "retried (only failed or cancelled)")
        options = SubmitOptions(
            queue=old.queue,
            priority=old.priority,
            tenant=old.tenant,
            concurrency_key=old.concurrency_key,
            idempotency_key=f"retry-of:{old.id}" if once else None,
            meta={**old.meta, **(meta or {}), "retry_of": old.id},
        )
        return await self.asubmit_name(old.task, old.args, old.kwargs, options)

    def retry(self, job_id: str) -> Job:
        return self.run_sync(self.aretry(job_id))

    async def aretry_matching(
        self,
        *,
        status: State | str = State.FAILED,
        task: str | None = None,
        queue: str | None = None,
        limit: int = 100,
        dry_run: bool = False,
    ) -> list[tuple[JobRecord, Job | None]]:
        """Retry (``once`` each) up to ``limit`` failed or cancelled jobs matching the filter,
        newest first; returns each old job with its retry (None with ``dry_run``)."""
        wanted = State(status)
        if wanted not in (State.FAILED, State.CANCELLED):
            raise InvalidTransition("*", wanted.value, "retried (only failed or cancelled)")
        backend = await self.backend()
        found: list[JobRecord] = []
        cursor: str | None = None
        while len(found) < limit:
            size = min(100, limit - len(found))
            flt = JobFilter(status=wanted, task=task, queue=queue, limit=size, cursor=cursor)
            page = await backend.list_jobs(flt)
            found += page.jobs
            if (cursor := page.next_cursor) is None:
                break
        if dry_run:
            return [(old, None) for old in found]
        return [(old, await self.aretry(old.id, once=True)) for old in found]

    def retention(self) -> RetentionPolicy:
        """The retention policy prunes apply: the settings' and the registered tasks' own."""
        return self.settings.retention({t.name: t.retention for t in self.registry if t.retention})

    async def aprune(self, batch: int = 1000) -> int:
        """Delete every ended job past its retention (see :meth:`retention`), ``batch`` at a
        time (workers do this on their own every ``prune_interval``); returns how many."""
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_PAGE:
            raise ValueError(f"batch must be a whole number from 1 to {MAX_PAGE}, not {batch!r}")
        backend = await self.backend()
        total = 0
        while pruned := await backend.prune(batch, self.retention()):
            total += pruned
        return total
