"""The Django tasks an offload ``App`` knows: their specs, found once, under one lock.

A Django task becomes an offload task named by its dotted path (``reports.tasks.build``). The
web process registers a task when it first enqueues it; a worker registers, at start, every
task of its backend alias found in each installed app's ``tasks`` module and in the modules
listed in ``OPTIONS["modules"]``. Names never resolve to code anywhere else.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from django.apps import apps
from django.utils.module_loading import autodiscover_modules

from offload.client import App
from offload.core.retry import RetryPolicy
from offload.core.task import TaskSpec, infer_executor
from offload.integrations.django._compat import Task
from offload.integrations.django.config import BackendConfig
from offload.integrations.django.execution import django_task_of, job_function


class TaskCatalog:
    """Registers Django tasks in ``app``'s registry and finds them again by name."""

    def __init__(self, app: App, config: BackendConfig) -> None:
        self.app = app
        self.config = config
        self._lock = threading.Lock()

    def spec_for(self, task: Task[Any, Any]) -> TaskSpec:
        """The offload spec of ``task``, registered on first use."""
        name = task.module_path
        with self._lock:
            if name in self.app.registry:
                spec = self.app.registry.get(name)
                known = django_task_of(spec.func)
                if known is None or known.func is not task.func:
                    raise ValueError(
                        f"the offload app already has a task named {name!r} that is not this "
                        "Django task; rename one of them"
                    )
                return spec
            func = job_function(task)
            spec = TaskSpec(
                func=func,
                name=name,
                queue=task.queue_name,
                executor=infer_executor(func),
                retry=RetryPolicy(retries=self.config.retries),
                timeout=self.config.timeout,
            )
            self.app.registry.add(spec)
            return spec

    def discover(self, alias: str) -> list[TaskSpec]:
        """Import the task modules and register every Django task of ``alias`` they define."""
        modules = [importlib.import_module(name) for name in self.config.modules]
        autodiscover_modules("tasks")
        modules += [m for m in _app_task_modules() if m not in modules]
        found = [t for m in modules for t in _tasks_in(m) if t.backend == alias]
        return [self.spec_for(t) for t in found]

    def find(self, name: str) -> Task[Any, Any] | None:
        """The Django task a job of that name runs (imported if its module is one of an
        installed app or listed in ``modules``), else None."""
        if name in self.app.registry:
            return django_task_of(self.app.registry.get(name).func)
        module_name, _, attr = name.rpartition(".")
        allowed = module_name in self.config.modules or apps.get_containing_app_config(module_name)
        if not module_name or not allowed:
            return None
        try:
            found = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            return None
        return found if isinstance(found, Task) else None


def _app_task_modules() -> Iterable[ModuleType]:
    for config in apps.get_app_configs():
        module = getattr(config.module, "tasks", None)
        if isinstance(module, ModuleType):
            yield module


def _tasks_in(module: ModuleType) -> list[Task[Any, Any]]:
    return [value for value in vars(module).values() if isinstance(value, Task)]
