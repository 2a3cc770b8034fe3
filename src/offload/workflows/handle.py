"""``Workflow``: a handle on a submitted workflow; its status and result come from its steps."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from offload.core.job import JobRecord
from offload.core.states import State
from offload.errors import InvalidTransition, JobCancelled, JobFailed, WaitTimeout
from offload.jobs import POLL_MAX, POLL_START, Job
from offload.workflows import store
from offload.workflows.plan import Plan, StepNode, WorkflowStatus, node_result, workflow_status

if TYPE_CHECKING:
    from offload.workflows.host import WorkflowApp


class WorkflowSnapshot(NamedTuple):
    """A workflow's status and its steps' jobs from one read: the status is the one these very
    steps give (``status, steps = await wf.asnapshot()``)."""

    status: WorkflowStatus
    steps: list[Job | None]


class Workflow:
    """A submitted workflow. ``id`` is its first step's job id; ``app.workflow(id)`` loads it
    again later, from any process."""

    def __init__(self, app: WorkflowApp, plan: Plan, head: JobRecord) -> None:
        self._app = app
        self.plan = plan
        self._tenant = head.tenant
        self._queue = head.queue

    def __repr__(self) -> str:
        return f"<Workflow {self.id} with {len(self.plan.steps)} steps>"

    @property
    def id(self) -> str:
        return self.plan.id

    async def _read(self) -> tuple[dict[str, JobRecord | None], WorkflowStatus]:
        backend = await self._app.backend()
        marked = await store.is_cancelled(backend, self.plan)
        records = await store.read_steps(backend, self.plan)
        return records, workflow_status(self.plan, records, marked=marked)

    async def astatus(self) -> WorkflowStatus:
        """pending, running, succeeded, failed or cancelled (read from the steps' jobs)."""
        return (await self._read())[1]

    def status(self) -> WorkflowStatus:
        return self._app.run_sync(self.astatus())

    async def asteps(self) -> list[Job | None]:
        """Each step's job, in the order of the workflow's definition (None: not submitted yet)."""
        records, _ = await self._read()
        return [None if r is None else Job(self._app, r) for r in records.values()]

    def steps(self) -> list[Job | None]:
        return self._app.run_sync(self.asteps())

    async def asnapshot(self) -> WorkflowSnapshot:
        """The status and each step's job from one read of the steps, so they always agree (a
        page that shows both: separate :meth:`astatus` and :meth:`asteps` calls read twice)."""
        records, status = await self._read()
        steps = [None if r is None else Job(self._app, r) for r in records.values()]
        return WorkflowSnapshot(status, steps)

    def snapshot(self) -> WorkflowSnapshot:
        return self._app.run_sync(self.asnapshot())

    async def aresult(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to end; return its last step's result (a final group's list).

        :raises JobFailed: a step failed (``.job_id`` is that step's job, ``.error`` its error).
        :raises JobCancelled: the workflow was cancelled.
        :raises WaitTimeout: it did not end within ``timeout`` seconds (it keeps running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = POLL_START
        while True:
            records, status = await self._read()
            if status in (
                WorkflowStatus.SUCCEEDED,
                WorkflowStatus.FAILED,
                WorkflowStatus.CANCELLED,
            ):
                return self._outcome(records, status)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"workflow {self.id} is still {status} after {timeout:g}s")
            wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(wait)
            pause = min(POLL_MAX, pause * 1.5)

    def result(self, timeout: float | None = None) -> Any:
        return self._app.run_sync(self.aresult(timeout))

    def _outcome(self, records: dict[str, JobRecord | None], status: WorkflowStatus) -> Any:
        def record_of(step: StepNode) -> JobRecord | None:
            return records.get(step.path)

        if status is WorkflowStatus.SUCCEEDED:
            return node_result(self.plan.root, record_of)
        if status is WorkflowStatus.CANCELLED:
            raise JobCancelled(self.id, f"workflow {self.id} was cancelled")
        for step in self.plan.steps:
            record = records.get(step.path)
            if record is not None and record.status is State.FAILED:
                error = record.error or {}
                raise JobFailed(
                    record.id,
                    f"workflow {self.id} failed at step {step.path} ({step.task}): "
                    f"{error.get('type', 'Error')}: {error.get('message', '')}",
                    error,
                )
        raise JobFailed(self.id, f"workflow {self.id} failed")  # pragma: no cover

    async def acancel(self) -> Workflow:
        """Cancel the workflow: its waiting steps at once, its running steps are asked to stop,
        and no further step starts. Raises InvalidTransition once it has succeeded."""
        if await self.astatus() is WorkflowStatus.SUCCEEDED:
            raise InvalidTransition(self.id, "succeeded", "cancelled")
        backend = await self._app.backend()
        await store.cancel(backend, self.plan, tenant=self._tenant, queue=self._queue)
        return self

    def cancel(self) -> Workflow:
        return self._app.run_sync(self.acancel())
