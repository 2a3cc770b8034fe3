"""Read model of the dashboard's workflows page: recent workflows and their steps' states.

A workflow is found by its first job (the one that carries its plan); its steps' jobs are read
by id, as :class:`offload.workflows.handle.Workflow` reads them. Only the caller's tenant's.
"""

from __future__ import annotations

from offload.backends import Backend
from offload.core.job import JobFilter, JobRecord
from offload.core.states import State
from offload.errors import InvalidWorkflow
from offload.service.overview import Scan
from offload.service.overview_models import FlowNode, WorkflowRow, WorkflowsView, at
from offload.workflows import store
from offload.workflows.plan import (
    ChainNode,
    GroupNode,
    Node,
    Plan,
    StepNode,
    node_state,
    workflow_status,
)

#: jobs read (newest first) to find the most recent workflows
FLOW_SCAN = 2000


def _is_head(job: JobRecord) -> bool:
    info = job.meta.get("workflow")
    return isinstance(info, dict) and "plan" in info


async def workflows_view(backend: Backend, tenant: str, *, limit: int = 20) -> WorkflowsView:
    """The ``limit`` newest workflows of ``tenant``."""
    now = await backend.now()
    heads: list[JobRecord] = []
    async for job in Scan(backend, JobFilter(tenant=tenant), cap=FLOW_SCAN):
        if _is_head(job):
            heads.append(job)
            if len(heads) >= limit:
                break
    rows = [row for head in heads if (row := await _workflow_row(backend, head)) is not None]
    return WorkflowsView(now=at(now), workflows=rows)


async def _workflow_row(backend: Backend, head: JobRecord) -> WorkflowRow | None:
    try:
        plan = Plan.from_json(head.id, head.meta["workflow"]["plan"])
    except (InvalidWorkflow, KeyError, TypeError, ValueError):
        return None  # a plan this version cannot read: leave it out
    records = await store.read_steps(backend, plan)
    marked = await store.is_cancelled(backend, plan)
    status = workflow_status(plan, records, marked=marked)
    done = sum(1 for r in records.values() if r is not None and r.status is State.SUCCEEDED)
    return WorkflowRow(
        id=plan.id,
        status=status.value,
        created_at=at(head.created_at),
        steps=len(plan.steps),
        done=done,
        root=flow_node(plan, plan.root, records),
    )


def flow_node(plan: Plan, node: Node, records: dict[str, JobRecord | None]) -> FlowNode:
    """``node`` as a tree of states (a chain's and a group's derived as the workflow does)."""

    def state_of(step: StepNode) -> State | None:
        record = records.get(step.path)
        return None if record is None else record.status

    status = node_state(node, state_of)
    if isinstance(node, StepNode):
        record = records.get(node.path)
        return FlowNode(
            kind="step",
            path=node.path,
            status=status,
            task=node.task,
            job_id=None if record is None else record.id,
        )
    if isinstance(node, ChainNode):
        children = [flow_node(plan, child, records) for child in node.children]
        return FlowNode(kind="chain", path=node.path, status=status, children=children)
    assert isinstance(node, GroupNode)
    members = [flow_node(plan, member, records) for member in node.members]
    return FlowNode(kind="group", path=node.path, status=status, children=members)
