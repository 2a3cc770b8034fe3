"""A workflow's plan: the tree of its steps, as stored with its first job. Pure data, no I/O.

The root is always a chain. Every node has a *path*, the positions that lead to it from the root
("1" is the root's second node, "1.0" that node's first member). Job ids derive from the
workflow id and the path, so anyone holding the plan can find every step's job with
``backend.get``: the first step's job id *is* the workflow id; step ``p`` is ``<id>.<p>``; the
join job of member ``m`` of group ``g`` is ``<id>.<g>.j<m>``; the cancel marker is
``<id>.cancel``.

States are derived from the steps' jobs, never stored on their own:
:func:`node_state` reads a chain from its far end (a later step exists only if the earlier ones
succeeded, so a pruned early step does not hide progress).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from offload.core.job import JobRecord
from offload.core.states import TERMINAL_STATES, State

PLAN_VERSION = 1


class WorkflowStatus(StrEnum):
    """Where a workflow is, derived from its steps' jobs."""

    PENDING = "pending"  # no step has started yet
    RUNNING = "running"  # a step runs, or some succeeded and more are to come
    SUCCEEDED = "succeeded"  # the last step (every member of a final group) succeeded
    FAILED = "failed"  # a step failed after its retries: nothing after it will start
    CANCELLED = "cancelled"  # the workflow (or one of its steps) was cancelled


@dataclass(frozen=True, slots=True)
class StepNode:
    """One job to run: a task with its JSON arguments and submit options."""

    path: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    receives: bool  # the previous result is put in front of ``args`` when it is submitted
    queue: str
    priority: int = 0
    delay: float = 0.0
    run_at: float | None = None
    concurrency_key: str | None = None
    result_ttl: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChainNode:
    """Nodes run one after another; each receives the previous one's result."""

    path: str
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class GroupNode:
    """Members run side by side; the group's result is the list of theirs, in member order."""

    path: str
    members: tuple[Node, ...]


Node = StepNode | ChainNode | GroupNode


@dataclass(frozen=True, slots=True)
class StartNode:
    """What follows a finished node: start ``node`` with the finished node's result."""

    node: Node


@dataclass(frozen=True, slots=True)
class JoinMember:
    """What follows a finished node that is member ``member`` of ``group``: its join job."""

    group: GroupNode
    member: int


@dataclass(frozen=True)
class Plan:
    """A workflow: its id, its root chain, and the ttl of its own bookkeeping jobs."""

    id: str
    root: ChainNode
    ttl: float | None = None

    # -- the tree ------------------------------------------------------------------------------
    @cached_property
    def steps(self) -> list[StepNode]:
        """Every step, in the order they appear in the workflow's definition."""
        return list(_steps(self.root))

    @cached_property
    def groups(self) -> list[GroupNode]:
        return [node for node in _nodes(self.root) if isinstance(node, GroupNode)]

    @cached_property
    def _by_path(self) -> dict[str, Node]:
        return {node.path: node for node in _nodes(self.root)}

    @property
    def head(self) -> StepNode:
        """The first step: always submitted with the workflow, it carries the plan."""
        return self.steps[0]

    def node(self, path: str) -> Node:
        return self._by_path[path]

    def following(self, path: str) -> StartNode | JoinMember | None:
        """What to do once the node at ``path`` succeeded (None: the workflow is complete)."""
        while path:
            parent_path, _, index_text = path.rpartition(".")
            index = int(index_text)
            parent = self.node(parent_path)
            if isinstance(parent, GroupNode):
                return JoinMember(parent, index)
            assert isinstance(parent, ChainNode)
            if index + 1 < len(parent.children):
                return StartNode(parent.children[index + 1])
            path = parent_path  # the chain finished with this node's result
        return None

    # -- job ids -------------------------------------------------------------------------------
    def step_id(self, step: StepNode) -> str:
        return self.id if step.path == self.head.path else f"{self.id}.{step.path}"

    def join_id(self, group: GroupNode, member: int) -> str:
        return f"{self.id}.{group.path}.j{member}"

    @property
    def marker_id(self) -> str:
        return f"{self.id}.cancel"

    def join_ids(self) -> list[str]:
        return [self.join_id(g, m) for g in self.groups for m in range(len(g.members))]

    # -- stored form ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"version": PLAN_VERSION, "ttl": self.ttl, "root": _node_json(self.root)}

    @classmethod
    def from_json(cls, workflow_id: str, data: dict[str, Any]) -> Plan:
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"workflow {workflow_id}: unknown plan version {data.get('version')}")
        root = _node_from_json(data["root"], "")
        assert isinstance(root, ChainNode)
        return cls(workflow_id, root, data.get("ttl"))


def steps_of(node: Node) -> list[StepNode]:
    return list(_steps(node))


def first_steps(node: Node) -> list[StepNode]:
    """The steps to submit to start ``node``: the first of a chain, every member of a group."""
    if isinstance(node, StepNode):
        return [node]
    if isinstance(node, ChainNode):
        return first_steps(node.children[0])
    return [step for member in node.members for step in first_steps(member)]


# -- states derived from the steps' jobs ----------------------------------------------------------
StateOf = Callable[[StepNode], State | None]  # a step's job state; None: not submitted (or pruned)


def node_state(node: Node, state_of: StateOf) -> State | None:
    """The state of a node: a step's job state; a chain's furthest started node's state (running
    between two nodes); a group's members' (failed or cancelled as soon as one is). None: not
    started."""
    if isinstance(node, StepNode):
        return state_of(node)
    if isinstance(node, ChainNode):
        for index in range(len(node.children) - 1, -1, -1):
            state = node_state(node.children[index], state_of)
            if state is None:
                continue
            last = index == len(node.children) - 1
            return State.RUNNING if state is State.SUCCEEDED and not last else state
        return None
    states = [node_state(member, state_of) for member in node.members]
    for verdict in (State.FAILED, State.CANCELLED):
        if verdict in states:
            return verdict
    if all(state is State.SUCCEEDED for state in states):
        return State.SUCCEEDED
    if all(state is None for state in states):
        return None
    if State.RUNNING in states or State.SUCCEEDED in states:
        return State.RUNNING
    return State.QUEUED


def is_done(state: State | None) -> bool:
    return state in TERMINAL_STATES


def node_result(node: Node, record_of: Callable[[StepNode], JobRecord | None]) -> Any:
    """A finished node's result: a step's, a chain's last node's, a group's list of members'."""
    if isinstance(node, StepNode):
        record = record_of(node)
        return None if record is None else record.result
    if isinstance(node, ChainNode):
        return node_result(node.children[-1], record_of)
    return [node_result(member, record_of) for member in node.members]


def workflow_status(
    plan: Plan, records: dict[str, JobRecord | None], *, marked: bool
) -> WorkflowStatus:
    """The status from the steps' jobs (by path) and whether the cancel marker exists."""

    def state_of(step: StepNode) -> State | None:
        record = records.get(step.path)
        return None if record is None else record.status

    root = node_state(plan.root, state_of)
    states = {state_of(step) for step in plan.steps}
    if root is State.SUCCEEDED:
        return WorkflowStatus.SUCCEEDED
    if State.FAILED in states:
        return WorkflowStatus.FAILED
    if marked or State.CANCELLED in states:
        return WorkflowStatus.CANCELLED
    if root is State.RUNNING or State.RUNNING in states or State.SUCCEEDED in states:
        return WorkflowStatus.RUNNING
    return WorkflowStatus.PENDING


# -- walking and storing the tree ------------------------------------------------------------------
def _nodes(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, ChainNode):
        for child in node.children:
            yield from _nodes(child)
    elif isinstance(node, GroupNode):
        for member in node.members:
            yield from _nodes(member)


def _steps(node: Node) -> Iterator[StepNode]:
    return (n for n in _nodes(node) if isinstance(n, StepNode))


_STEP_FIELDS = (
    "task",
    "args",
    "kwargs",
    "receives",
    "queue",
    "priority",
    "delay",
    "run_at",
    "concurrency_key",
    "result_ttl",
    "meta",
)


def _node_json(node: Node) -> dict[str, Any]:
    if isinstance(node, StepNode):
        return {"step": {name: getattr(node, name) for name in _STEP_FIELDS}}
    if isinstance(node, ChainNode):
        return {"chain": [_node_json(child) for child in node.children]}
    return {"group": [_node_json(member) for member in node.members]}


def _node_from_json(data: dict[str, Any], path: str) -> Node:
    def sub(i: int) -> str:
        return f"{path}.{i}" if path else str(i)

    if "step" in data:
        return StepNode(path=path, **{name: data["step"][name] for name in _STEP_FIELDS})
    if "chain" in data:
        children = tuple(_node_from_json(c, sub(i)) for i, c in enumerate(data["chain"]))
        return ChainNode(path, children)
    members = tuple(_node_from_json(m, sub(i)) for i, m in enumerate(data["group"]))
    return GroupNode(path, members)
