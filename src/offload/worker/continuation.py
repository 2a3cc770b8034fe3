"""Workflows on the worker: what follows a step is stored *with* its success, in one backend
operation (``Backend.complete(lease, result, then=jobs)``).

So no successor can run while the step could still run again: a crash before that write re-runs
the step (at-least-once) and nothing of what follows exists yet; after it, the step is done for
good. Successors have deterministic ids and idempotency keys, so a step that ran twice (its
lease lost) submits them once. A group member stores its *join* job the same way. The join
waits until its member's success is recorded, then looks at every member: if all succeeded,
what follows the group (with their results in member order) is stored with the join's own
success; if not, it ends, because the member recorded last has a join that will find them all
(or the group failed and nothing follows). Every hand-off checks the workflow's cancel marker
(see ``offload.workflows.store``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from offload.backends import Backend
from offload.core.job import JobRecord, NewJob
from offload.core.limits import Limits
from offload.core.registry import TaskRegistry
from offload.core.retry import RetryPolicy
from offload.core.states import State
from offload.core.task import TaskSpec
from offload.errors import InvalidWorkflow, JobNotFound, Retry
from offload.worker.context import current
from offload.workflows import store
from offload.workflows.plan import (
    GroupNode,
    Plan,
    StepNode,
    is_done,
    node_result,
    node_state,
    steps_of,
)

#: A join waits for its member by retrying: this often at most, starting at JOIN_FIRST_PAUSE.
JOIN_MAX_PAUSE = 5.0
JOIN_FIRST_PAUSE = 0.05
#: ... and this many times at most (at JOIN_MAX_PAUSE: about two months).
JOIN_PATIENCE = 1_000_000
PLAN_CACHE = 256


def is_step(record: JobRecord) -> bool:
    """Whether the job is a workflow step or join (its success starts what follows it)."""
    info = record.meta.get("workflow")
    return isinstance(info, dict) and ("path" in info or "join" in info)


class Continuation:
    """The workflow side of a worker's job runner: one per runner."""

    def __init__(self, backend: Backend, registry: TaskRegistry) -> None:
        self.backend = backend
        self.registry = registry
        self._plans: OrderedDict[str, Plan] = OrderedDict()  # plans never change: keep a few
        self._joined: dict[str, list[NewJob]] = {}  # join job id -> what follows its group

    def tasks(self) -> dict[str, TaskSpec]:
        """The built-in tasks the runner resolves before the app's own."""
        patient = RetryPolicy(
            retries=JOIN_PATIENCE, base_delay=JOIN_FIRST_PAUSE, max_delay=JOIN_MAX_PAUSE
        )
        return {
            store.JOIN_TASK: TaskSpec(self.join, store.JOIN_TASK, executor="async", retry=patient),
            store.MARKER_TASK: TaskSpec(_marker, store.MARKER_TASK, executor="async"),
        }

    async def successors(self, record: JobRecord, result: Any) -> list[NewJob]:
        """Step ``record`` succeeded with ``result`` (not yet recorded): the jobs that follow
        it, to be stored together with its success (``Backend.complete(..., then=...)``).
        For a join, what its run found to follow the group."""
        if record.task == store.JOIN_TASK:
            return self._joined.pop(record.id, [])
        plan, path = await self._step_plan(record)
        if plan is None:
            return []
        return await store.successors(
            self.backend, plan, path, result, trigger=record, limits_of=self._limits
        )

    async def recorded(self, record: JobRecord, then: list[NewJob]) -> None:
        """The step's success and ``then`` are stored: cancel them if the workflow was
        cancelled meanwhile."""
        plan = await self._plan(record.meta["workflow"]["id"], record)
        await store.recheck(self.backend, plan, [job.id for job in then])

    def forget(self, record: JobRecord) -> None:
        """The job's outcome is written (or discarded): drop what a join of it found."""
        self._joined.pop(record.id, None)

    async def _step_plan(self, record: JobRecord) -> tuple[Plan | None, str]:
        info = record.meta["workflow"]
        plan = await self._plan(info["id"], record)
        step = plan.node(info["path"])
        if not isinstance(step, StepNode) or plan.step_id(step) != record.id:
            return None, ""  # a copy of a step (``app.retry``) runs on its own
        return plan, info["path"]

    async def join(self, workflow_id: str, group: str, member: int) -> str:
        """The built-in join task: see the module's docstring."""
        ctx = current()
        plan = await self._plan(workflow_id)
        node = plan.node(group)
        assert isinstance(node, GroupNode)
        if await store.is_cancelled(self.backend, plan):
            return "cancelled"
        read: dict[str, JobRecord | None] = {}

        async def load(steps: list[StepNode]) -> None:
            for step in steps:
                if step.path not in read:
                    read[step.path] = await self.backend.get(plan.step_id(step))

        def state_of(step: StepNode) -> State | None:
            record = read.get(step.path)
            return None if record is None else record.status

        mine = node.members[member]
        await load(steps_of(mine))
        if not is_done(node_state(mine, state_of)):
            pause = min(JOIN_MAX_PAUSE, JOIN_FIRST_PAUSE * 2 ** min(ctx.attempt - 1, 16))
            raise Retry(pause, f"member {member} of group {group} has not ended yet")
        for index, other in enumerate(node.members):
            await load(steps_of(other))
            state = node_state(other, state_of)
            if state is not State.SUCCEEDED:
                return f"member {index} is {state or 'not started'}"
        results = node_result(node, lambda step: read.get(step.path))
        me = await self.backend.get(ctx.id)
        assert me is not None
        # Stored with this join's success, like a step's successors (see the runner).
        self._joined[ctx.id] = await store.successors(
            self.backend, plan, group, results, trigger=me, limits_of=self._limits
        )
        return "continued"

    def _limits(self, task: str) -> Limits | None:
        return self.registry.get(task).limits if task in self.registry else None

    async def _plan(self, workflow_id: str, record: JobRecord | None = None) -> Plan:
        plan = self._plans.get(workflow_id)
        if plan is None:
            if record is not None and record.id == workflow_id:  # the first step carries it
                plan = Plan.from_json(workflow_id, record.meta["workflow"]["plan"])
            else:
                try:
                    plan, _ = await store.load_plan(self.backend, workflow_id)
                except JobNotFound:
                    raise InvalidWorkflow(
                        f"workflow {workflow_id} cannot go on: its first job, which holds its "
                        "plan, is gone (pruned once its result_ttl ran out)"
                    ) from None
            self._plans[workflow_id] = plan
            if len(self._plans) > PLAN_CACHE:
                self._plans.popitem(last=False)
        return plan


async def _marker(workflow_id: str) -> None:
    """A workflow's cancel marker does nothing if it ever runs."""
