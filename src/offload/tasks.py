"""``Task``: the handle ``@app.task`` returns. Call it to run the function inline; submit it to
run on a worker; ``.s(...)`` makes it a workflow step."""

from __future__ import annotations

from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from offload import transactional
from offload.core.job import NewJob
from offload.core.options import SubmitOptions
from offload.core.task import TaskSpec
from offload.errors import ConfigurationError
from offload.jobs import Job, JobApp
from offload.workflows.canvas import Signature

P = ParamSpec("P")
R = TypeVar("R")


class TaskApp(JobApp, Protocol):
    """What a ``Task`` needs of its ``offload.App``: its one submit path (a protocol, so this
    module does not import ``offload.client``, which imports it)."""

    def prepare(
        self,
        task: str | TaskSpec,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        options: SubmitOptions | None = None,
    ) -> NewJob: ...

    async def asubmit_many(self, jobs: list[NewJob]) -> list[Job]: ...

    def submit_many(self, jobs: list[NewJob]) -> list[Job]: ...


class Task(Generic[P, R]):
    """A registered task. Call it to run inline; ``submit`` it to run on a worker."""

    def __init__(self, app: TaskApp, spec: TaskSpec, options: SubmitOptions | None = None) -> None:
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
        concurrency_key, queue, tenant, meta; ``connection`` (a psycopg connection) or
        ``session`` (a SQLAlchemy session) to submit inside that transaction (PostgreSQL)."""
        return Task(self.app, self.spec, SubmitOptions(**options))

    async def asubmit(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Store a job for this task and return its handle once it is durably committed (with
        ``connection=``/``session=``: once it is in that transaction, for the caller to commit)."""
        new = self.app.prepare(self.spec, args, kwargs, self._options)
        if self._options.transactional:
            return await transactional.asubmit(self.app, new, self._options)
        [job] = await self.app.asubmit_many([new])
        return job

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Synchronous ``asubmit``. Arguments are validated before anything is stored."""
        new = self.app.prepare(self.spec, args, kwargs, self._options)
        if self._options.transactional:
            return transactional.submit(self.app, new, self._options)
        return self.app.submit_many([new])[0]

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """This task with these arguments (and its submit options) as a workflow step.

        In a chain, the step receives the previous result as its first positional argument, in
        front of ``args``. Arguments are checked when the workflow is submitted.
        """
        if self._options.transactional:
            raise ConfigurationError("a workflow step cannot take connection= or session=")
        return Signature(self, args, dict(kwargs), self._options)
