"""The ``OPTIONS`` of an offload entry in Django's ``TASKS`` setting, checked once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class BackendConfig:
    """What ``TASKS[alias]["OPTIONS"]`` may hold; every key is optional.

    ``backend``: offload backend URL (default: ``$OFFLOAD_BACKEND``, else
    ``sqlite:///offload.db``). ``app``: ``module:attribute`` of an ``offload.App`` whose backend,
    settings and own ``@app.task`` tasks to use instead (not with ``backend``).
    ``enqueue_on_commit``: inside ``transaction.atomic()``, submit when the transaction commits
    (and never if it rolls back) (default True). ``database``: the connection alias whose
    transaction counts ("default"). ``retries``, ``timeout``: offload task options given to every
    Django task of this backend (default 0 retries, no timeout). ``modules``: modules holding
    Django tasks besides each installed app's ``tasks`` module, imported by the worker.
    """

    backend: str | None = None
    app: str | None = None
    enqueue_on_commit: bool = True
    database: str = "default"
    retries: int = 0
    timeout: float | None = None
    modules: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_options(cls, alias: str, options: dict[str, Any]) -> BackendConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown keys {unknown}; offload knows "
                f"{sorted(known)}"
            )
        if options.get("backend") and options.get("app"):
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']: give 'backend' (a URL) or 'app' (an offload App "
                "whose backend is used), not both"
            )
        _check(alias, options, "backend", str, optional=True)
        _check(alias, options, "app", str, optional=True)
        _check(alias, options, "enqueue_on_commit", bool)
        _check(alias, options, "database", str)
        _check(alias, options, "retries", int)
        _check(alias, options, "timeout", (int, float), optional=True)
        modules = options.get("modules", ())
        if isinstance(modules, str) or not all(isinstance(m, str) for m in modules):
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['modules'] must be a list of module names, "
                f"not {modules!r}"
            )
        return cls(**{**options, "modules": tuple(modules)})

    def key(self) -> tuple[Any, ...]:
        return (self.backend, self.app, self.retries, self.timeout, self.modules)


def _check(
    alias: str,
    options: dict[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    *,
    optional: bool = False,
) -> None:
    if name not in options or (optional and options[name] is None):
        return
    value = options[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        wanted = kind.__name__ if isinstance(kind, type) else "a number"
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS'][{name!r}] must be {wanted}, not {value!r}"
        )
