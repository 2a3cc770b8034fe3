"""What the workflows package needs of an App and of a Task, declared here as protocols so that
workflows never imports ``offload.client`` (which delegates its workflow methods to
``offload.workflows.submit``): the dependency runs one way, client -> workflows."""

from __future__ import annotations

from typing import Protocol

from offload.core.registry import TaskRegistry
from offload.core.task import TaskSpec
from offload.jobs import JobApp
from offload.settings import Settings


class WorkflowApp(JobApp, Protocol):
    """An ``offload.App`` as the workflows package sees it."""

    @property
    def settings(self) -> Settings: ...

    @property
    def registry(self) -> TaskRegistry: ...


class StepTask(Protocol):
    """An ``offload.Task`` as a workflow step sees it."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> TaskSpec: ...
