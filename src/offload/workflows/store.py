"""A workflow's jobs in the backend, through the ordinary Backend protocol only.

Submitting a step is idempotent: its job id derives from the workflow id and its path, and it
carries the idempotency key ``wf:<id>:<path>``, so whoever submits it twice (a step that ran
twice, say) gets the one job back. What follows a node (:func:`successors`) is built only
while the cancel marker is absent, and checked again once stored (:func:`recheck`): the
canceller writes the marker before it cancels the steps it finds, so either it finds the new
step or the worker that stored it sees the marker.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from offload.backends import Backend
from offload.core.job import JobRecord, NewJob
from offload.core.limits import Limits
from offload.errors import InvalidTransition, InvalidWorkflow, JobNotFound
from offload.workflows.plan import (
    GroupNode,
    JoinMember,
    Node,
    Plan,
    StartNode,
    StepNode,
    first_steps,
)

#: Built-in tasks the worker runs itself (see offload.worker.continuation).
JOIN_TASK = "offload.workflow.join"
MARKER_TASK = "offload.workflow.cancelled"
#: A cancel marker is cancelled as soon as it is stored; were that interrupted, it would run
#: (as a no-op) only this much later.
MARKER_DELAY = 86400.0
#: Meta entries a step passes on to the jobs it submits.
INHERITED_META = ("request_id",)

LimitsOf = Callable[[str], Limits | None]
NoValue = object()  # "start without an input": the workflow's first steps


def no_limits(task: str) -> Limits | None:
    return None


async def load_plan(backend: Backend, workflow_id: str) -> tuple[Plan, JobRecord]:
    """The plan of a workflow and its first job (which carries it)."""
    head = await backend.get(workflow_id)
    if head is None:
        raise JobNotFound(workflow_id)
    info = head.meta.get("workflow")
    if not isinstance(info, dict) or "plan" not in info:
        if isinstance(info, dict) and "id" in info:
            raise InvalidWorkflow(
                f"job {workflow_id} is a step of workflow {info['id']}; load that id instead"
            )
        raise InvalidWorkflow(f"job {workflow_id} is not a workflow")
    return Plan.from_json(workflow_id, info["plan"]), head


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def step_job(
    plan: Plan,
    step: StepNode,
    value: Any,
    *,
    tenant: str,
    limits: Limits | None,
    inherited: dict[str, Any] | None = None,
) -> NewJob:
    """The job of ``step``; ``value`` (the previous result) goes in front of its arguments."""
    args = [value, *step.args] if step.receives and value is not NoValue else list(step.args)
    info: dict[str, Any] = {"id": plan.id, "path": step.path}
    if step is plan.head:
        info["plan"] = plan.to_json()
    return NewJob(
        id=plan.step_id(step),
        task=step.task,
        args=args,
        kwargs=dict(step.kwargs),
        queue=step.queue,
        priority=step.priority,
        delay=step.delay,
        run_at=step.run_at,
        idempotency_key=f"wf:{plan.id}:{step.path}",
        fingerprint=_fingerprint(plan.id, step.path, step.task),
        concurrency_key=step.concurrency_key,
        tenant=tenant,
        meta={**step.meta, **(inherited or {}), "workflow": info},
        result_ttl=step.result_ttl,
        limits=limits,
    )


def join_job(
    plan: Plan,
    group: GroupNode,
    member: int,
    *,
    queue: str,
    priority: int,
    tenant: str,
    inherited: dict[str, Any] | None = None,
) -> NewJob:
    """The built-in job that waits for member ``member`` of ``group`` and, if it finds every
    member succeeded, starts what follows the group."""
    key = f"wf:{plan.id}:{group.path}:join:{member}"
    return NewJob(
        id=plan.join_id(group, member),
        task=JOIN_TASK,
        args=[plan.id, group.path, member],
        kwargs={},
        queue=queue,
        priority=priority,
        idempotency_key=key,
        fingerprint=_fingerprint(key),
        tenant=tenant,
        meta={
            **(inherited or {}),
            "workflow": {"id": plan.id, "join": group.path, "member": member},
        },
        result_ttl=plan.ttl,
    )


async def get_many(backend: Backend, job_ids: Sequence[str]) -> list[JobRecord | None]:
    return list(await asyncio.gather(*(backend.get(job_id) for job_id in job_ids)))


async def submit_once(backend: Backend, jobs: Sequence[NewJob]) -> list[JobRecord]:
    """Store the jobs that do not exist yet (all or none); return every one as stored.

    The ids say whether a job exists even once its idempotency key has expired (24 h)."""
    ids = [job.id for job in jobs]
    found = dict(zip(ids, await get_many(backend, ids), strict=True))
    missing = [job for job in jobs if found[job.id] is None]
    stored = {r.id: r for r in await backend.submit(missing)} if missing else {}
    return [found[job.id] or stored[job.id] for job in jobs]


async def is_cancelled(backend: Backend, plan: Plan) -> bool:
    return await backend.get(plan.marker_id) is not None


async def cancel_quietly(backend: Backend, job_id: str) -> None:
    """Cancel a job unless it has ended (or is gone)."""
    try:
        await backend.cancel(job_id)
    except (InvalidTransition, JobNotFound):
        pass


def first_jobs(
    plan: Plan,
    node: Node,
    value: Any,
    *,
    tenant: str,
    limits_of: LimitsOf,
    inherited: dict[str, Any] | None = None,
) -> list[NewJob]:
    """The jobs of the first steps of ``node``, each receiving ``value``."""
    return [
        step_job(plan, step, value, tenant=tenant, limits=limits_of(step.task), inherited=inherited)
        for step in first_steps(node)
    ]


async def start(
    backend: Backend,
    plan: Plan,
    node: Node,
    value: Any,
    *,
    tenant: str,
    limits_of: LimitsOf,
    inherited: dict[str, Any] | None = None,
    fresh: bool = False,
) -> list[JobRecord]:
    """Submit the first steps of ``node`` (idempotently), each receiving ``value``.

    ``fresh``: the workflow is new (its id too), so none of them can exist yet."""
    jobs = first_jobs(plan, node, value, tenant=tenant, limits_of=limits_of, inherited=inherited)
    return await (backend.submit(jobs) if fresh else submit_once(backend, jobs))


async def successors(
    backend: Backend,
    plan: Plan,
    path: str,
    result: Any,
    *,
    trigger: JobRecord,
    limits_of: LimitsOf,
) -> list[NewJob]:
    """The jobs that follow the node at ``path`` once it succeeded with ``result``: none when
    the workflow is complete or cancelled. Whoever stores them calls :func:`recheck` after."""
    step = plan.following(path)
    if step is None or await is_cancelled(backend, plan):
        return []
    inherited = {k: trigger.meta[k] for k in INHERITED_META if k in trigger.meta}
    if isinstance(step, StartNode):
        return first_jobs(
            plan, step.node, result, tenant=trigger.tenant, limits_of=limits_of, inherited=inherited
        )
    assert isinstance(step, JoinMember)
    job = join_job(
        plan,
        step.group,
        step.member,
        queue=trigger.queue,
        priority=trigger.priority,
        tenant=trigger.tenant,
        inherited=inherited,
    )
    return [job]


async def recheck(backend: Backend, plan: Plan, job_ids: Sequence[str]) -> None:
    """Jobs of ``plan`` were just stored: if it was cancelled meanwhile (its canceller may not
    have seen them), cancel them."""
    if job_ids and await is_cancelled(backend, plan):
        for job_id in job_ids:
            await cancel_quietly(backend, job_id)


async def read_steps(backend: Backend, plan: Plan) -> dict[str, JobRecord | None]:
    """Every step's job by path (None: not submitted yet, or pruned)."""
    records = await get_many(backend, [plan.step_id(step) for step in plan.steps])
    return dict(zip([step.path for step in plan.steps], records, strict=True))


async def cancel(backend: Backend, plan: Plan, *, tenant: str, queue: str) -> None:
    """Store the cancel marker, then cancel every step and join job that has not ended."""
    marker = NewJob(
        id=plan.marker_id,
        task=MARKER_TASK,
        args=[plan.id],
        kwargs={},
        queue=queue,
        delay=MARKER_DELAY,
        idempotency_key=f"wf:{plan.id}:cancel",
        fingerprint=_fingerprint(plan.id, "cancel"),
        tenant=tenant,
        meta={"workflow": {"id": plan.id, "cancel": True}},
        result_ttl=plan.ttl,
    )
    await submit_once(backend, [marker])
    await cancel_quietly(backend, plan.marker_id)
    ids = [plan.step_id(step) for step in plan.steps] + plan.join_ids()
    live = [r.id for r in await get_many(backend, ids) if r is not None and not r.is_terminal]
    await asyncio.gather(*(cancel_quietly(backend, job_id) for job_id in live))
