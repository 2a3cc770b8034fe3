"""offload: background jobs for Python web apps.

Submit from an endpoint in milliseconds; run on workers with the right executor; never lose an
acknowledged job. See the README for a tour.
"""

import importlib
import typing  # a module, so not a public name (tests/test_public_api.py)

from offload._version import __version__
from offload.core.clock import ManualClock
from offload.core.job import JobRecord, Transition
from offload.core.retention import Retention
from offload.core.states import State
from offload.errors import (
    BackendError,
    BackendUnavailable,
    Cancelled,
    ConfigurationError,
    IdempotencyConflict,
    InvalidArguments,
    InvalidTransition,
    InvalidWorkflow,
    JobCancelled,
    JobError,
    JobFailed,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    OffloadError,
    ProcessError,
    ProcessTimeout,
    Retry,
    SerializationError,
    TaskNotFound,
    WaitTimeout,
)
from offload.settings import Settings

if typing.TYPE_CHECKING:  # the lazy names below, spelled out for type checkers and IDEs
    from offload.client import App, SubmitOptions, Task
    from offload.http_client import APIError, AsyncHTTPClient, HTTPClient
    from offload.jobs import Job
    from offload.worker.context import JobContext, current
    from offload.worker.subprocess import ProcessResult, run_process, run_process_sync
    from offload.worker.worker import Worker
    from offload.workflows import Chain, Group, Signature, Workflow, WorkflowStatus, chain, group

# The heavy names load on first use (PEP 562), so that `import offload.service` does not load the
# worker and `import offload` loads neither the worker nor httpx: name -> module that defines it.
_LAZY = {
    "App": "offload.client",
    "SubmitOptions": "offload.client",
    "Task": "offload.client",
    "APIError": "offload.http_client",
    "AsyncHTTPClient": "offload.http_client",
    "HTTPClient": "offload.http_client",
    "Job": "offload.jobs",
    "JobContext": "offload.worker.context",
    "current": "offload.worker.context",
    "ProcessResult": "offload.worker.subprocess",
    "run_process": "offload.worker.subprocess",
    "run_process_sync": "offload.worker.subprocess",
    "Worker": "offload.worker.worker",
    **dict.fromkeys(
        ("Chain", "Group", "Signature", "Workflow", "WorkflowStatus", "chain", "group"),
        "offload.workflows",
    ),
}


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'offload' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "APIError",
    "App",
    "AsyncHTTPClient",
    "BackendError",
    "BackendUnavailable",
    "Cancelled",
    "Chain",
    "ConfigurationError",
    "Group",
    "HTTPClient",
    "IdempotencyConflict",
    "InvalidArguments",
    "InvalidTransition",
    "InvalidWorkflow",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "JobRecord",
    "JobTimeout",
    "LeaseLost",
    "ManualClock",
    "OffloadError",
    "ProcessError",
    "ProcessResult",
    "ProcessTimeout",
    "Retention",
    "Retry",
    "SerializationError",
    "Settings",
    "Signature",
    "State",
    "SubmitOptions",
    "Task",
    "TaskNotFound",
    "Transition",
    "WaitTimeout",
    "Worker",
    "Workflow",
    "WorkflowStatus",
    "__version__",
    "chain",
    "current",
    "group",
    "run_process",
    "run_process_sync",
]
