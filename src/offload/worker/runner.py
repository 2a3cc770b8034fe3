"""Running one job, as named steps: execute (in its executor), then record the outcome."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from offload.backends import Backend
from offload.core.codec import dumps, to_json_value
from offload.core.job import JobRecord, Lease, NewJob
from offload.core.registry import TaskRegistry
from offload.core.states import Reason
from offload.core.task import TaskSpec
from offload.errors import (
    BackendError,
    Cancelled,
    IdempotencyConflict,
    InvalidArguments,
    JobTimeout,
    LeaseLost,
    Retry,
    SerializationError,
    TaskNotFound,
)
from offload.settings import Settings
from offload.worker.context import JobContext
from offload.worker.continuation import Continuation, is_step
from offload.worker.executors.base import ChildError, Executor
from offload.worker.failure import clip_error, error_info, result_too_large
from offload.worker.slots import Seat

log = logging.getLogger("offload.worker")

StopReason = Literal["cancel", "lost", "shutdown"]
Kind = Literal["succeeded", "failed", "retry", "cancelled", "released", "lost"]


@dataclass(eq=False)
class Running:
    """A job this worker holds, with what it needs to stop or report on it."""

    record: JobRecord
    lease: Lease
    ctx: JobContext
    seat: Seat  # its place among the worker's slots (offload.worker.slots)
    task: asyncio.Task[None] | None = None
    stop_reason: StopReason | None = None
    pending_progress: tuple[float | None, str | None] | None = None
    progress_writer: asyncio.Task[None] | None = None

    @property
    def executing(self) -> bool:
        """Claimed and its code not done yet (waiting for a slot included)."""
        return self.seat.executing


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    result: Any = None
    error: dict[str, Any] | None = field(default=None)
    retry_in: float | None = None
    reason: Reason = Reason.FAILED
    then: list[NewJob] = field(default_factory=list)  # a workflow step's successors


class JobRunner:
    """Executes jobs and writes their outcomes; shared by all of a worker's jobs."""

    def __init__(
        self,
        registry: TaskRegistry,
        backend: Backend,
        executors: dict[str, Executor],
        settings: Settings,
    ) -> None:
        self.settings = settings  # its caps on results and error messages
        self.registry = registry
        self.backend = backend
        self.executors = executors
        self.rng = random.Random()
        self.continuation = Continuation(backend, registry)
        self.builtins = self.continuation.tasks()

    def spec(self, name: str) -> TaskSpec:
        """The task of that name: a built-in one (workflow joins) or the app's."""
        return self.builtins.get(name) or self.registry.get(name)

    async def finish(self, job: Running, outcome: Outcome) -> Outcome:
        """Flush the job's last progress, start what follows a workflow step, then record the
        outcome ("lost" if discarded)."""
        if job.progress_writer is not None and outcome.kind != "lost":
            await asyncio.gather(job.progress_writer, return_exceptions=True)
        if outcome.kind == "succeeded" and is_step(job.record):
            outcome = await self.continue_workflow(job, outcome)
        written = await self.record(job, outcome)
        self.continuation.forget(job.record)
        if written is None:
            return Outcome("lost")
        if written.then:
            await self._recheck(job, written.then)
        return written

    async def continue_workflow(self, job: Running, outcome: Outcome) -> Outcome:
        """The step's successors, to be stored with its success in one backend operation
        (see offload.worker.continuation). Retries while the backend is away; an error that
        cannot pass fails the step."""
        pause = 0.05
        while True:
            try:
                then = await self.continuation.successors(job.record, outcome.result)
                return Outcome("succeeded", result=outcome.result, then=then)
            except BackendError as exc:
                if job.stop_reason == "lost":  # another worker runs it now: it continues there
                    return Outcome("lost")
                log.warning(
                    "job %s: cannot submit the next workflow step yet (%s); retrying",
                    job.record.id,
                    exc,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
            except Exception as exc:  # the plan is gone, say: the workflow cannot go on
                log.error(
                    "job %s: the next workflow step cannot be submitted: %s", job.record.id, exc
                )
                return Outcome("failed", error=error_info(exc))

    async def _recheck(self, job: Running, then: list[NewJob]) -> None:
        try:
            await self.continuation.recorded(job.record, then)
        except Exception as exc:  # the canceller cancels what it finds; log what it may miss
            log.warning(
                "job %s: cannot check whether its workflow was cancelled: %s", job.record.id, exc
            )

    async def execute(self, job: Running) -> Outcome:
        rec = job.record
        try:
            if not await job.seat.take():  # a job claimed ahead (or a suspect) waits for a slot
                return Outcome("released")  # none freed in time: another worker may take it
            spec = self.spec(rec.task)
            executor = self.executors[spec.executor]
            value = await executor.run(spec, job.ctx, rec.args, rec.kwargs, spec.timeout)
            result = to_json_value(value)
            size = len(dumps(result))
            if size > self.settings.max_result_bytes:  # retrying cannot help
                limit = self.settings.max_result_bytes
                return Outcome("failed", error=result_too_large(size, limit, rec.task))
            return Outcome("succeeded", result=result)
        except asyncio.CancelledError:
            _uncancel()
            return self._stopped(job, None)
        except Cancelled as exc:
            return self._stopped(job, exc)
        except (TaskNotFound, InvalidArguments) as exc:
            return Outcome("failed", error=error_info(exc))  # retrying cannot help
        except SerializationError as exc:
            message = f"task {rec.task} returned a value that is not JSON: {exc}"
            return Outcome("failed", error=error_info(SerializationError(message)))
        except Exception as exc:
            if job.stop_reason is not None:
                return self._stopped(job, exc)
            return self._failure(job, exc)

    def _stopped(self, job: Running, exc: BaseException | None) -> Outcome:
        reason = job.stop_reason
        if reason == "lost":
            return Outcome("lost")
        if reason == "shutdown":
            return Outcome("released")
        info = error_info(exc) if exc is not None else {"type": "Cancelled", "message": ""}
        info["message"] = f"job {job.record.id} was cancelled"
        return Outcome("cancelled", error=info)

    def _failure(self, job: Running, exc: Exception) -> Outcome:
        attempt = job.record.attempts
        policy = self.spec(job.record.task).retry
        reason = Reason.TIMEOUT if isinstance(exc, JobTimeout) else Reason.FAILED
        info = exc.info if isinstance(exc, ChildError) else error_info(exc)
        if not policy.allows_retry(attempt):
            if isinstance(exc, Retry):
                info["message"] = (
                    f"the task asked for a retry after attempt {attempt}, but it allows "
                    f"{policy.retries} retries; raise its limit with @app.task(retries=N)"
                )
            return Outcome("failed", error=info, reason=reason)
        delay = exc.delay if isinstance(exc, Retry) else policy.delay(attempt, self.rng)
        return Outcome("retry", error=info, retry_in=delay, reason=reason)

    async def record(self, job: Running, outcome: Outcome) -> Outcome | None:
        """Write the outcome, conditional on the lease; retry while the backend is away.

        Returns the outcome written (a step whose successors cannot be stored fails), or None
        when it was discarded because the lease is gone.
        """
        if outcome.kind == "lost":
            return None
        pause = 0.05
        while True:
            try:
                await self._write(job.lease, outcome)
                return outcome
            except LeaseLost:
                log.warning(
                    "job %s: lease lost before its outcome (%s) was written; discarded",
                    job.record.id,
                    outcome.kind,
                )
                return None
            except IdempotencyConflict as exc:  # a successor's key names another request
                log.error(
                    "job %s: the next workflow step cannot be submitted: %s", job.record.id, exc
                )
                outcome = Outcome("failed", error=error_info(exc))
            except BackendError as exc:
                if job.stop_reason == "lost":
                    return None
                log.warning("job %s: cannot record outcome yet (%s); retrying", job.record.id, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _write(self, lease: Lease, outcome: Outcome) -> None:
        if outcome.error is not None:
            error = clip_error(outcome.error, self.settings.max_error_chars)
            outcome = Outcome(outcome.kind, outcome.result, error, outcome.retry_in, outcome.reason)
        match outcome.kind:
            case "succeeded":
                await self.backend.complete(lease, outcome.result, then=outcome.then)
            case "failed":
                await self.backend.fail(lease, outcome.error or {}, reason=outcome.reason)
            case "retry":
                await self.backend.fail(lease, outcome.error or {}, retry_in=outcome.retry_in)
            case "cancelled":
                await self.backend.mark_cancelled(lease, outcome.error)
            case "released":
                await self.backend.release(lease)


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
