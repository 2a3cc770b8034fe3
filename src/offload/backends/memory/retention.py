"""Which ended jobs a retention policy makes due, in the memory backend (a plain scan)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence, Set

from offload.core.job import JobRecord
from offload.core.retention import RetentionPolicy


def retention_due(
    ended: Sequence[JobRecord],
    with_ttl: Set[str],
    already: Set[str],
    policy: RetentionPolicy,
    now: float,
) -> list[str]:
    """Ids of the ``ended`` jobs (oldest ended first) the policy deletes: those without a
    result_ttl past their age by outcome, then the oldest beyond ``max_finished`` per queue."""
    gone = set(already)
    due: list[str] = []
    for job in ended:
        if job.id in gone or job.id in with_ttl:
            continue
        age = policy.age(job.task, job.status)
        if age is not None and (job.finished_at or 0.0) + age <= now:
            due.append(job.id)
            gone.add(job.id)
    if policy.max_finished is not None:
        by_queue: dict[str, list[str]] = defaultdict(list)
        for job in ended:
            if job.id not in gone:
                by_queue[job.queue].append(job.id)
        for ids in by_queue.values():
            due += ids[: max(0, len(ids) - policy.max_finished)]
    return due
