"""The task registry: the only way a task name resolves to code."""

from __future__ import annotations

from collections.abc import Iterator

from offload.core.task import TaskSpec
from offload.errors import TaskNotFound


class TaskRegistry:
    """Registered tasks by name. Names never resolve to arbitrary imports."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskSpec] = {}

    def add(self, spec: TaskSpec) -> None:
        existing = self._tasks.get(spec.name)
        if existing is not None and existing.func is not spec.func:
            raise ValueError(
                f"a task named {spec.name!r} is already registered "
                f"({existing.func.__module__}.{existing.func.__qualname__}); pass name=... to one"
            )
        self._tasks[spec.name] = spec

    def get(self, name: str) -> TaskSpec:
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotFound(name, list(self._tasks)) from None

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)
