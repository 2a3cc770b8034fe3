"""What web code imports: the App, its tasks, and handles on jobs. Sync and async faces.

Every operation is written once, as a coroutine; the synchronous methods run that coroutine on
a private background loop (see ``_portal``), so Flask views, scripts and the CLI get the same
behaviour as ``async def`` endpoints.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta, tzinfo
from typing import Any, Generic, ParamSpec, TypeVar, overload

import orjson

from offload import tracing
from offload._portal import Portal, before_interpreter_exit
from offload.backends import Backend, open_backend
from offload.core import validate
from offload.core.bounds import check_delay, check_priority
from offload.core.codec import to_json_value
from offload.core.ids import new_job_id
from offload.core.job import MAX_PAGE, JobFilter, JobRecord, NewJob
from offload.core.limits import Limits, check_cap, parse_rate
from offload.core.registry import TaskRegistry
from offload.core.retry import RetryPolicy
from offload.core.schedule import (
    MissedPolicy,
    Schedule,
    check_missed,
    check_no_arguments,
    make_trigger,
)
from offload.core.states import State
from offload.core.task import ExecutorKind, TaskSpec, infer_executor
from offload.errors import (
    BackendUnavailable,
    InvalidTransition,
    JobNotFound,
    OffloadError,
    SerializationError,
)
from offload.jobs import Job
from offload.logs import REQUEST_ID
from offload.settings import Settings
from offload.workflows.methods import AppWorkflows, TaskSignatures

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class App(AppWorkflows):
    """The registry of tasks plus the backend they are submitted to.

    ``backend`` is a URL (``sqlite:///offload.db``, ``redis://...``, ``memory://``) or a Backend
    object; by default ``$OFFLOAD_BACKEND``, else ``sqlite:///offload.db``.
    """

    def __init__(
        self, backend: str | Backend | None = None, *, settings: Settings | None = None,
        tracing: bool | None = None,
    ):  # fmt: skip
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
        self._closes_at_exit = False

    # -- declaring tasks -----------------------------------------------------------------------
    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        executor: ExecutorKind | None = None,
        retries: int = 0,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 300.0,
        timeout: float | None = None,
        priority: int = 0,
        result_ttl: float | None = None,
        concurrency: int | None = None,
        key_concurrency: int | None = None,
        rate_limit: str | None = None,
        key_rate_limit: str | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...
    def task(
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        executor: ExecutorKind | None = None,
        retries: int = 0,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 300.0,
        timeout: float | None = None,
        priority: int = 0,
        result_ttl: float | None = None,
        concurrency: int | None = None,
        key_concurrency: int | None = None,
        rate_limit: str | None = None,
        key_rate_limit: str | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task; use bare (``@app.task``) or with options.

        ``executor`` defaults to "async" for ``async def`` and "thread" otherwise; use
        "process" for CPU-bound work. ``retries`` counts re-runs after a failure, spaced by
        exponential backoff starting at ``retry_backoff`` seconds (with jitter).

        Global limits, held by the backend across every worker: ``concurrency`` (running jobs
        of this task), ``key_concurrency`` (running jobs per ``concurrency_key``),
        ``rate_limit`` and ``key_rate_limit`` (starts per period, e.g. ``"60/m"``).
        """
        limits = Limits(
            concurrency=check_cap(concurrency, "concurrency"),
            key_concurrency=check_cap(key_concurrency, "key_concurrency"),
            rate=None if rate_limit is None else parse_rate(rate_limit, what="rate_limit"),
            key_rate=None
            if key_rate_limit is None
            else parse_rate(key_rate_limit, what="key_rate_limit"),
        )

        def register(fn: Callable[P, R]) -> Task[P, R]:
            spec = TaskSpec(
                func=fn,
                name=name or fn.__qualname__,
                queue=queue or "default",
                executor=executor or infer_executor(fn),
                retry=RetryPolicy(
                    retries=retries, base_delay=retry_backoff, max_delay=retry_backoff_max
                ),
                timeout=timeout,
                priority=priority,
                result_ttl=result_ttl,
                limits=limits if limits.any else None,
            )
            spec.check_annotations()
            self.registry.add(spec)
            return Task(self, spec)

        return register(func) if func is not None else register

    def periodic(
        self,
        cron: str | None = None,
        /,
        *,
        every: timedelta | None = None,
        tz: str | tzinfo | None = None,
        missed: MissedPolicy = "skip",
        name: str | None = None,
        queue: str | None = None,
        executor: ExecutorKind | None = None,
        retries: int = 0,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 300.0,
        timeout: float | None = None,
        priority: int = 0,
        result_ttl: float | None = None,
        concurrency: int | None = None,
        rate_limit: str | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register a task that workers run on a schedule, once per tick across all of them.

        ``cron`` is a 5-field expression read in ``tz`` (default UTC); ``every`` a whole number
        of seconds, counted from the Unix epoch. ``missed`` says what a starting worker does
        about ticks that passed while no worker ran: "skip" them, or run "once" for the latest.
        The other options are those of :meth:`task` (``concurrency=1``: a tick does not start
        while the last one still runs); the task can also be submitted by hand.
        """
        trigger = make_trigger(cron, every, tz)
        policy = check_missed(missed)

        def register(fn: Callable[P, R]) -> Task[P, R]:
            task_name = name or fn.__qualname__
            if task_name in self.schedules:
                raise ValueError(f"a schedule named {task_name!r} already exists; pass name=...")
            check_no_arguments(fn, task_name)
            task = self.task(
                name=task_name, queue=queue, executor=executor, retries=retries,
                retry_backoff=retry_backoff, retry_backoff_max=retry_backoff_max,
                timeout=timeout, priority=priority, result_ttl=result_ttl,
                concurrency=concurrency, rate_limit=rate_limit,
            )(fn)  # fmt: skip
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
        backend = self.new_backend()
        await backend.open()
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
                # A portal inherited through fork() (gunicorn --preload) has no thread here.
                self._portal = Portal()
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
        self, spec: TaskSpec, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any],
        options: SubmitOptions,
    ) -> NewJob:  # fmt: skip
        """Validate and encode a submission (raises before anything is stored)."""
        json_args, json_kwargs = spec.encode_arguments(args, kwargs)
        queue = options.queue or spec.queue
        priority = spec.priority if options.priority is None else options.priority
        fingerprint = None
        if options.idempotency_key is not None:
            # Everything that shapes the job: the same key with any of it changed is a 409.
            body = orjson.dumps(
                [spec.name, json_args, json_kwargs, queue, priority, options.delay,
                 options.run_at, options.concurrency_key],
                option=orjson.OPT_SORT_KEYS,
            )  # fmt: skip
            fingerprint = hashlib.sha256(body).hexdigest()
        job_id, tenant = new_job_id(), options.tenant or "default"
        meta = _with_request_id(options.meta)
        if self.settings.tracing:  # a PRODUCER span; its context is stored in the job's meta
            meta = tracing.stamp(meta, queue=queue, job_id=job_id, task=spec.name, tenant=tenant)
        return NewJob(
            id=job_id,
            task=spec.name,
            args=json_args,
            kwargs=json_kwargs,
            queue=queue,
            priority=priority,
            delay=max(0.0, options.delay or 0.0),
            run_at=options.run_at,
            idempotency_key=options.idempotency_key,
            fingerprint=fingerprint,
            concurrency_key=options.concurrency_key,
            tenant=tenant,
            meta=meta,
            result_ttl=self.settings.result_ttl if spec.result_ttl is None else spec.result_ttl,
            limits=spec.limits,
        )

    async def asubmit_name(
        self, task: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None,
        options: SubmitOptions | None = None,
    ) -> Job:  # fmt: skip
        """Submit a registered task by name (what the CLI and HTTP API do)."""
        spec = self.registry.get(task)
        new = self.prepare(spec, args or [], kwargs or {}, options or SubmitOptions())
        [record] = await (await self.backend()).submit([new])
        return Job(self, record)

    async def asubmit_many(self, jobs: list[NewJob]) -> list[Job]:
        """Store many prepared jobs in one backend operation (all or none)."""
        records = await (await self.backend()).submit(jobs)
        return [Job(self, r) for r in records]

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
        self, *, status: State | str | None = None, task: str | None = None,
        queue: str | None = None, limit: int = 50,
    ) -> list[Job]:  # fmt: skip
        flt = JobFilter(
            status=State(status) if status else None, task=task, queue=queue, limit=limit
        )
        page = await (await self.backend()).list_jobs(flt)
        return [Job(self, r) for r in page.jobs]

    def jobs(
        self, *, status: State | str | None = None, task: str | None = None,
        queue: str | None = None, limit: int = 50,
    ) -> list[Job]:  # fmt: skip
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
        options = SubmitOptions(queue=old.queue, priority=old.priority, tenant=old.tenant,
                                concurrency_key=old.concurrency_key,
                                idempotency_key=f"retry-of:{old.id}" if once else None,
                                meta={**old.meta, **(meta or {}), "retry_of": old.id})  # fmt: skip
        return await self.asubmit_name(old.task, old.args, old.kwargs, options)

    def retry(self, job_id: str) -> Job:
        return self.run_sync(self.aretry(job_id))

    async def aretry_matching(
        self, *, status: State | str = State.FAILED, task: str | None = None,
        queue: str | None = None, limit: int = 100, dry_run: bool = False,
    ) -> list[tuple[JobRecord, Job | None]]:  # fmt: skip
        """Retry (``once`` each) up to ``limit`` failed or cancelled jobs matching the filter,
        newest first; returns each old job with its retry (None with ``dry_run``)."""
        wanted = State(status)
        if wanted not in (State.FAILED, State.CANCELLED):
            raise InvalidTransition("*", wanted.value, "retried (only failed or cancelled)")
        backend = await self.backend()
        found: list[JobRecord] = []
        cursor: str | None = None
        while len(found) < limit:
            page = await backend.list_jobs(JobFilter(
                status=wanted, task=task, queue=queue, limit=min(100, limit - len(found)),
                cursor=cursor,
            ))  # fmt: skip
            found += page.jobs
            cursor = page.next_cursor
            if cursor is None:
                break
        if dry_run:
            return [(old, None) for old in found]
        return [(old, await self.aretry(old.id, once=True)) for old in found]

    async def aprune(self, batch: int = 1000) -> int:
        """Delete every ended job whose result_ttl ran out, ``batch`` at a time (workers do
        this on their own every ``prune_interval``); returns how many."""
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_PAGE:
            raise ValueError(f"batch must be a whole number from 1 to {MAX_PAGE}, not {batch!r}")
        backend = await self.backend()
        total = 0
        while pruned := await backend.prune(batch):
            total += pruned
        return total


def _with_request_id(meta: dict[str, Any] | None) -> dict[str, Any]:
    """The job's meta, with the id of the request being served (if any) as ``request_id``."""
    request_id = REQUEST_ID.get()
    if request_id is None or (meta and "request_id" in meta):
        return dict(meta or {})
    return {**(meta or {}), "request_id": request_id}


def _plain_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` as plain JSON data, else ValueError (NaN would be stored as null)."""
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict of JSON values, not {type(meta).__name__}")
    try:
        plain: dict[str, Any] = to_json_value(meta)
    except SerializationError as exc:
        raise ValueError(f"meta is not JSON: {exc}") from None
    return plain


class SubmitOptions:
    """Per-submission options (``task.options(...)``)."""

    __slots__ = ("concurrency_key", "delay", "idempotency_key", "meta", "priority", "queue",
                 "run_at", "tenant")  # fmt: skip

    def __init__(
        self, *, priority: int | None = None, delay: float | None = None,
        run_at: datetime | float | None = None, idempotency_key: str | None = None,
        concurrency_key: str | None = None, queue: str | None = None, tenant: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        validate.check_schedule(delay, run_at)
        self.priority = None if priority is None else check_priority(priority)
        self.delay = None if delay is None else check_delay(delay)
        self.run_at = None if run_at is None else validate.run_at_epoch(run_at)
        self.idempotency_key = (
            None if idempotency_key is None else validate.idempotency_key(idempotency_key)
        )
        self.concurrency_key = (
            None if concurrency_key is None else validate.concurrency_key(concurrency_key)
        )
        self.queue = None if queue is None else validate.queue_name(queue)
        self.tenant = tenant
        self.meta = None if meta is None else _plain_meta(meta)


class Task(TaskSignatures, Generic[P, R]):
    """A registered task. Call it to run inline; ``submit`` it to run on a worker."""

    def __init__(self, app: App, spec: TaskSpec, options: SubmitOptions | None = None) -> None:
        self.app = app
        self.spec = spec
        self._options = options or SubmitOptions()
        self.__doc__ = spec.func.__doc__
        self.__wrapped__ = spec.func

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.spec.func(*args, **kwargs)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<Task {self.spec.name} queue={self.spec.queue} executor={self.spec.executor}>"

    def options(self, **options: Any) -> Task[P, R]:
        """The same task with submit options: priority, delay, run_at, idempotency_key,
        concurrency_key, queue, tenant, meta."""
        return Task(self.app, self.spec, SubmitOptions(**options))

    async def asubmit(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Store a job for this task and return its handle once it is durably committed."""
        new = self.app.prepare(self.spec, args, kwargs, self._options)
        [record] = await (await self.app.backend()).submit([new])
        return Job(self.app, record)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Synchronous ``asubmit``. Arguments are validated before anything is stored."""
        new = self.app.prepare(self.spec, args, kwargs, self._options)
        return self.app.run_sync(self.app.asubmit_many([new]))[0]
