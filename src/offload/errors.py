"""Every exception offload raises, under one root.

::

    OffloadError
    ├── ConfigurationError        a setting, URL or app path is wrong
    ├── BackendError              the backend failed to do what was asked
    │   └── BackendUnavailable    the backend cannot be reached right now (retry later)
    ├── TaskNotFound              no task of that name is registered
    ├── InvalidArguments          arguments do not fit the task's signature or are not JSON
    ├── InvalidWorkflow           a malformed workflow (an empty chain...), or an id of none
    ├── SerializationError        a value (usually a result) cannot be encoded as JSON
    ├── JobNotFound               no job with that id
    ├── IdempotencyConflict       an idempotency key was reused with a different request
    ├── InvalidTransition         a job cannot move from its state to the one asked for
    ├── LeaseLost                 the caller no longer owns the running job (fencing)
    ├── JobError                  waiting on a job that did not succeed
    │   ├── JobFailed             the job ended in `failed`
    │   └── JobCancelled          the job ended in `cancelled`
    ├── WaitTimeout               the job did not finish within the wait's timeout
    ├── Cancelled                 raised inside a job by `check_cancelled()`
    ├── JobTimeout                the job ran past its task's timeout
    ├── ProcessError              an external command exited with a non-zero status
    │   └── ProcessTimeout        an external command ran past its timeout and was killed
    └── Retry                     raised by task code to ask for another attempt later
"""

from __future__ import annotations

from typing import Any

from offload.core.bounds import check_delay


class OffloadError(Exception):
    """Root of every exception raised by offload."""


class ConfigurationError(OffloadError):
    """A setting, backend URL or application path is wrong; the message says which."""


class BackendError(OffloadError):
    """The backend failed to carry out an operation."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached right now; the operation may succeed later."""


class TaskNotFound(OffloadError):
    """No task with that name is registered in the application."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        listing = ", ".join(self.known) if self.known else "none registered"
        super().__init__(f"unknown task {name!r}; known tasks: {listing}")


class InvalidArguments(OffloadError):
    """The arguments do not fit the task's signature, or are not JSON values."""

    def __init__(self, task: str, message: str, *, argument: str | None = None) -> None:
        self.task = task
        self.argument = argument
        super().__init__(f"invalid arguments for task {task!r}: {message}")


class InvalidWorkflow(OffloadError):
    """A workflow is malformed (an empty chain or group, a step that is not a signature), or a
    job id given as a workflow's names none (or its plan is gone)."""


class SerializationError(OffloadError):
    """A value cannot be encoded as JSON (offload stores only JSON)."""


class JobNotFound(OffloadError):
    """No job with that id exists (or it belongs to another tenant)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}")


class IdempotencyConflict(OffloadError):
    """An idempotency key was reused within its window with a different request body."""

    def __init__(self, key: str, job_id: str) -> None:
        self.key = key
        self.job_id = job_id
        super().__init__(
            f"idempotency key {key!r} already names job {job_id} with different arguments; "
            "use a new key or resend the original request"
        )


class InvalidTransition(OffloadError):
    """A job cannot move from its current state to the state asked for."""

    def __init__(self, job_id: str, current: str, target: str) -> None:
        self.job_id = job_id
        self.current = current
        self.target = target
        super().__init__(f"job {job_id} is {current}; it cannot become {target}")


class LeaseLost(OffloadError):
    """The caller's lease on a running job expired or was taken over (stale fencing token)."""

    def __init__(self, job_id: str, token: int) -> None:
        self.job_id = job_id
        self.token = token
        super().__init__(f"lease on job {job_id} (token {token}) is no longer held")


class JobError(OffloadError):
    """A waited-on job ended without succeeding."""

    def __init__(self, job_id: str, message: str, error: dict[str, Any] | None = None) -> None:
        self.job_id = job_id
        self.error = error or {}
        super().__init__(message)


class JobFailed(JobError):
    """The job ended in the `failed` state; `.error` holds its recorded error."""


class JobCancelled(JobError):
    """The job ended in the `cancelled` state."""


class WaitTimeout(OffloadError, TimeoutError):
    """The job did not reach a terminal state within the wait's timeout (it keeps running)."""


class Cancelled(OffloadError):
    """Raised inside a job by `offload.current().check_cancelled()` once cancel was requested."""


class JobTimeout(OffloadError):
    """The job ran longer than its task's `timeout`."""


class ProcessError(OffloadError):
    """An external command started by `run_process` exited with a non-zero status."""

    def __init__(self, argv: list[str], returncode: int | None, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-5:]
        detail = ("; stderr: " + " | ".join(tail)) if tail else ""
        super().__init__(f"command {argv[0]!r} exited with status {returncode}{detail}")


class ProcessTimeout(ProcessError):
    """An external command ran past its timeout; its whole process group was killed."""

    def __init__(self, argv: list[str], timeout: float, stderr: str) -> None:
        super().__init__(argv, None, stderr)
        self.timeout = timeout
        self.args = (f"command {argv[0]!r} ran longer than {timeout:g}s and was killed",)


class Retry(OffloadError):
    """Raise inside a task to run it again after `delay` seconds.

    A retry counts as an attempt and obeys the task's ``retries`` limit.
    """

    def __init__(self, delay: float = 0.0, reason: str = "") -> None:
        self.delay = check_delay(delay, "Retry delay")
        self.reason = reason
        super().__init__(reason or f"retry requested in {self.delay:g}s")
