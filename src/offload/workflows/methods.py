"""The workflow methods of ``App`` (submit, load) and of ``Task`` (``.s``), as mixins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from offload import tracing
from offload.core.ids import new_job_id
from offload.core.job import DEFAULT_TENANT
from offload.core.limits import Limits
from offload.workflows import store
from offload.workflows.canvas import Flow, Signature
from offload.workflows.compile import compile_plan
from offload.workflows.handle import Workflow

if TYPE_CHECKING:
    from offload.client import App, Task


class AppWorkflows:
    """``App.submit_workflow`` and ``App.workflow``."""

    async def asubmit_workflow(
        self, flow: Flow, *, tenant: str | None = None, meta: dict[str, Any] | None = None
    ) -> Workflow:
        """Check and store a workflow: its first steps are committed before it returns.

        ``flow`` is a signature, ``chain(...)`` or ``group(...)``. Every step is checked first
        (registered task, arguments that fit); ``meta`` is added to every step's job.
        """
        app = cast("App", self)
        workflow_id, tenant = new_job_id(), tenant or DEFAULT_TENANT
        meta = dict(meta or {})
        if app.settings.tracing:  # one PRODUCER span; every step's attempts are its children
            meta = tracing.stamp(
                meta, queue=None, job_id=workflow_id, task="workflow", tenant=tenant
            )
        plan = compile_plan(app, flow, workflow_id, meta)
        backend = await app.backend()
        registry = app.registry

        def limits_of(task: str) -> Limits | None:
            return registry.get(task).limits

        [head, *_] = await store.start(
            backend, plan, plan.root, store.NoValue, tenant=tenant, limits_of=limits_of, fresh=True
        )
        return Workflow(app, plan, head)

    def submit_workflow(
        self, flow: Flow, *, tenant: str | None = None, meta: dict[str, Any] | None = None
    ) -> Workflow:
        """Synchronous ``asubmit_workflow``. Steps are checked before anything is stored."""
        app = cast("App", self)
        return app.run_sync(app.asubmit_workflow(flow, tenant=tenant, meta=meta))

    async def aworkflow(self, workflow_id: str) -> Workflow:
        """The workflow with this id (its first step's job id), from any process."""
        app = cast("App", self)
        plan, head = await store.load_plan(await app.backend(), workflow_id)
        return Workflow(app, plan, head)

    def workflow(self, workflow_id: str) -> Workflow:
        app = cast("App", self)
        return app.run_sync(app.aworkflow(workflow_id))


class TaskSignatures:
    """``Task.s``: the task with arguments, as a step of a workflow."""

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """This task with these arguments (and its submit options) as a workflow step.

        In a chain, the step receives the previous result as its first positional argument, in
        front of ``args``. Arguments are checked when the workflow is submitted.
        """
        task = cast("Task[..., Any]", self)
        return Signature(task, args, dict(kwargs), task._options)
