"""Declaring workflows: signatures (``task.s(...)``), ``chain(...)`` and ``group(...)``.

These are plain values: nothing is checked against an app or stored until the workflow is
submitted (``app.submit_workflow``). Malformed shapes (an empty chain, a step that is not a
signature) are rejected here, at once, with the bad value in the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from offload.errors import InvalidWorkflow

if TYPE_CHECKING:
    from offload.core.options import SubmitOptions
    from offload.workflows.host import StepTask


class Signature:
    """A task with its arguments and submit options: one step of a workflow.

    In a chain, the step receives the previous step's result as its first positional argument,
    in front of the arguments given here.
    """

    __slots__ = ("args", "kwargs", "options", "task")

    def __init__(
        self,
        task: StepTask,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: SubmitOptions,
    ) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.options = options

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task.name}.s({', '.join(shown)})"

    def __or__(self, other: Flow) -> Chain:
        return chain(self, other)


class Chain:
    """Nodes that run one after another, each receiving the previous one's result."""

    __slots__ = ("nodes",)

    def __init__(self, nodes: tuple[Signature | Group, ...]) -> None:
        self.nodes = nodes

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.nodes))})"

    def __or__(self, other: Flow) -> Chain:
        return chain(self, other)


class Group:
    """Members that run side by side; the group's result is the list of theirs, in order."""

    __slots__ = ("members",)

    def __init__(self, members: tuple[Flow, ...]) -> None:
        self.members = members

    def __repr__(self) -> str:
        return f"group({', '.join(map(repr, self.members))})"

    def __or__(self, other: Flow) -> Chain:
        return chain(self, other)


Flow = Signature | Chain | Group


def chain(*steps: Flow) -> Chain:
    """Run ``steps`` in order; each receives the previous one's result as its first argument
    (a group's result is the list of its members' results). Nested chains are flattened."""
    if not steps:
        raise InvalidWorkflow("chain() needs at least one step, got none")
    nodes: list[Signature | Group] = []
    for position, step in enumerate(steps, 1):
        _check(step, f"chain step {position}")
        nodes.extend(step.nodes if isinstance(step, Chain) else [step])
    return Chain(tuple(nodes))


def group(*members: Flow) -> Group:
    """Run ``members`` side by side. Put a group in a chain before a fan-in step, which gets
    the list of the members' results in member order: ``chain(group(...), fan_in.s())``."""
    if not members:
        raise InvalidWorkflow("group() needs at least one member, got none")
    for position, member in enumerate(members, 1):
        _check(member, f"group member {position}")
    return Group(members)


def as_chain(flow: object) -> Chain:
    """The root chain of a submitted workflow (a lone signature or group becomes one)."""
    _check(flow, "the workflow")
    assert isinstance(flow, Signature | Chain | Group)
    return flow if isinstance(flow, Chain) else chain(flow)


def _check(value: object, where: str) -> None:
    if isinstance(value, Signature | Chain | Group):
        return
    hint = ""
    name = getattr(value, "name", None) or getattr(value, "__name__", None)
    if name is not None:
        hint = f"; write {name}.s(...) to make a step of a registered task"
    raise InvalidWorkflow(f"{where} is {value!r}, not a signature, chain or group{hint}")
