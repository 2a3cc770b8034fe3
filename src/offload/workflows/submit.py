"""Submitting and loading workflows: the functions ``App.submit_workflow`` and ``App.workflow``
delegate to (they take the app as an argument; see ``host`` for what they need of it)."""

from __future__ import annotations

from typing import Any

from offload import tracing
from offload.core.ids import new_job_id
from offload.core.job import DEFAULT_TENANT
from offload.core.limits import Limits
from offload.workflows import store
from offload.workflows.canvas import Flow
from offload.workflows.compile import compile_plan
from offload.workflows.handle import Workflow
from offload.workflows.host import WorkflowApp


async def asubmit_workflow(
    app: WorkflowApp, flow: Flow, *, tenant: str | None, meta: dict[str, Any] | None
) -> Workflow:
    """Check ``flow`` against ``app`` and store its first steps (see ``App.asubmit_workflow``)."""
    workflow_id, tenant = new_job_id(), tenant or DEFAULT_TENANT
    meta = dict(meta or {})
    if app.settings.tracing:  # one PRODUCER span; every step's attempts are its children
        meta = tracing.stamp(meta, queue=None, job_id=workflow_id, task="workflow", tenant=tenant)
    plan = compile_plan(app, flow, workflow_id, meta)
    backend = await app.backend()
    registry = app.registry

    def limits_of(task: str) -> Limits | None:
        return registry.get(task).limits

    [head, *_] = await store.start(
        backend, plan, plan.root, store.NoValue, tenant=tenant, limits_of=limits_of, fresh=True
    )
    return Workflow(app, plan, head)


async def aload_workflow(app: WorkflowApp, workflow_id: str) -> Workflow:
    """The workflow with this id (see ``App.aworkflow``)."""
    plan, head = await store.load_plan(await app.backend(), workflow_id)
    return Workflow(app, plan, head)
