"""How the worker names things in its log lines: a job's structured fields and its queues
(by default every queue a registered task uses)."""

from __future__ import annotations

from collections.abc import Mapping

from offload.core.job import JobRecord
from offload.core.registry import TaskRegistry


def job_fields(rec: JobRecord) -> dict[str, object]:
    """Structured log fields of a job (JSON logs show them as keys)."""
    fields: dict[str, object] = {"job_id": rec.id, "task": rec.task, "attempt": rec.attempts}
    if "request_id" in rec.meta:
        fields["request_id"] = rec.meta["request_id"]
    return fields


def describe_queues(queues: Mapping[str, int | None]) -> str:
    return ", ".join(q if cap is None else f"{q} (max {cap})" for q, cap in queues.items())


def default_queues(registry: TaskRegistry) -> dict[str, int | None]:
    """Every queue a registered task uses (``default`` if none), uncapped."""
    return dict.fromkeys(sorted({spec.queue for spec in registry} or {"default"}))
