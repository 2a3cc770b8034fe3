"""Workflows: chains and groups of tasks, durable across worker crashes.

- ``canvas``: declaring them (``task.s(...)``, ``chain``, ``group``)
- ``compile``: checking a declared workflow against an app and turning it into a plan
- ``plan``: the stored plan, step ids and the status derived from the steps' jobs (pure)
- ``store``: submitting, advancing and cancelling through the Backend protocol
- ``handle``: ``Workflow``, what ``app.submit_workflow`` returns
- ``submit``: submitting and loading, what the App's workflow methods delegate to
- ``host``: what workflows need of an App and a Task (protocols: no import of the client)

The worker side (what runs when a step succeeds, and the join of a group) lives in
``offload.worker.continuation``. The guide is docs/guide/workflows.md.
"""

from offload.workflows.canvas import Chain, Group, Signature, chain, group
from offload.workflows.handle import Workflow, WorkflowSnapshot
from offload.workflows.plan import WorkflowStatus

__all__ = [
    "Chain",
    "Group",
    "Signature",
    "Workflow",
    "WorkflowSnapshot",
    "WorkflowStatus",
    "chain",
    "group",
]
