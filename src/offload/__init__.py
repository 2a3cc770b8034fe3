"""offload: background jobs for Python web apps.

Submit from an endpoint in milliseconds; run on workers with the right executor; never lose an
acknowledged job. See the README for a tour.
"""

from offload.client import App, SubmitOptions, Task
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
from offload.http_client import APIError, AsyncHTTPClient, HTTPClient
from offload.jobs import Job
from offload.settings import Settings
from offload.worker.context import JobContext, current
from offload.worker.subprocess import ProcessResult, run_process, run_process_sync
from offload.worker.worker import Worker
from offload.workflows import Chain, Group, Signature, Workflow, WorkflowStatus, chain, group

__version__ = "0.1.0"

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
