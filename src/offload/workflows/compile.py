"""Turning a declared workflow into its plan for one app: every check happens here, before
anything is stored (unregistered tasks, arguments that do not fit, step options a step cannot
have)."""

from __future__ import annotations

import inspect
from datetime import datetime
from typing import TYPE_CHECKING, Any

from offload.core.task import TaskSpec
from offload.errors import InvalidArguments, InvalidWorkflow
from offload.workflows.canvas import Chain, Group, Signature, as_chain
from offload.workflows.plan import ChainNode, GroupNode, Node, Plan, StepNode

if TYPE_CHECKING:
    from offload.workflows.host import WorkflowApp

_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.VAR_POSITIONAL,
)


class _Previous:
    """Stands for the previous step's result while a step's own arguments are checked."""

    def __repr__(self) -> str:
        return "<previous result>"


PREVIOUS = _Previous()


def compile_plan(app: WorkflowApp, flow: object, workflow_id: str, meta: dict[str, Any]) -> Plan:
    """The plan of ``flow`` (a signature, chain or group) for ``app``."""
    root = _chain(app, as_chain(flow), "", receives=False, meta=meta)
    return Plan(workflow_id, root, app.settings.result_ttl)


def _sub(path: str, index: int) -> str:
    return f"{path}.{index}" if path else str(index)


def _chain(
    app: WorkflowApp, flow: Chain, path: str, *, receives: bool, meta: dict[str, Any]
) -> ChainNode:
    children = tuple(
        _node(app, node, _sub(path, i), receives=receives or i > 0, meta=meta)
        for i, node in enumerate(flow.nodes)
    )
    return ChainNode(path, children)


def _node(
    app: WorkflowApp,
    flow: Signature | Chain | Group,
    path: str,
    *,
    receives: bool,
    meta: dict[str, Any],
) -> Node:
    if isinstance(flow, Signature):
        return _step(app, flow, path, receives=receives, meta=meta)
    if isinstance(flow, Chain):
        return _chain(app, flow, path, receives=receives, meta=meta)
    members = tuple(
        _node(app, member, _sub(path, i), receives=receives, meta=meta)
        for i, member in enumerate(flow.members)
    )
    return GroupNode(path, members)


def _step(
    app: WorkflowApp, sig: Signature, path: str, *, receives: bool, meta: dict[str, Any]
) -> StepNode:
    spec = app.registry.get(sig.task.name)  # TaskNotFound names the known tasks
    if spec.func is not sig.task.spec.func:
        raise InvalidWorkflow(
            f"step {sig!r} is a task of another app: app has a different task named {spec.name!r}"
        )
    opts = sig.options
    for name in ("idempotency_key", "tenant"):
        if getattr(opts, name) is not None:
            raise InvalidWorkflow(
                f"step {sig!r} has {name}={getattr(opts, name)!r}; steps take it from the "
                "workflow: pass it to submit_workflow instead"
            )
    if receives:
        args, kwargs = encode_following(spec, sig.args, sig.kwargs)
    else:
        args, kwargs = spec.encode_arguments(sig.args, sig.kwargs)
    run_at = opts.run_at.timestamp() if isinstance(opts.run_at, datetime) else opts.run_at
    return StepNode(
        path=path,
        task=spec.name,
        args=args,
        kwargs=kwargs,
        receives=receives,
        queue=opts.queue or spec.queue,
        priority=spec.priority if opts.priority is None else opts.priority,
        delay=max(0.0, opts.delay or 0.0),
        run_at=run_at,
        concurrency_key=opts.concurrency_key,
        result_ttl=app.settings.result_ttl if spec.result_ttl is None else spec.result_ttl,
        meta={**meta, **(opts.meta or {})},
    )


def encode_following(
    spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Check and encode the arguments of a step that gets the previous result in front of them
    (as its first positional argument) when it is submitted; that result is left out."""
    params = list(spec.signature.parameters.values())
    if not params or params[0].kind not in _POSITIONAL:
        shown = spec.signature.replace(return_annotation=inspect.Signature.empty)
        raise InvalidArguments(
            spec.name,
            "this step follows another, so it receives the previous result as its first "
            f"positional argument, but {spec.name}{shown} takes none",
        )
    bound = spec.bind((PREVIOUS, *args), kwargs)
    out_args: list[Any] = []
    out_kwargs: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = spec.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            rest = [v for v in value if v is not PREVIOUS]
            out_args.extend(spec.encode_argument(name, rest))
        elif value is PREVIOUS:
            continue
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out_kwargs.update(spec.encode_argument(name, value))
        elif name in kwargs:
            out_kwargs[name] = spec.encode_argument(name, value)
        else:
            out_args.append(spec.encode_argument(name, value))
    return out_args, out_kwargs
