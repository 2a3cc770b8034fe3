"""The backend contract: reads: list, stats.

Runs unchanged against every backend kind in ``tests/backends/conftest.py``; time only
moves through the manual clock. Shared helpers live in ``helpers.py``.
"""

from __future__ import annotations

from typing import Any

from offload.backends.base import Backend
from offload.core.clock import ManualClock
from offload.core.job import JobFilter
from offload.core.states import State

from .helpers import (
    MakeJob,
    claim_one,
)


async def test_list_jobs_filters(backend: Backend, make: MakeJob) -> None:
    jobs = {
        "mail-a": make(task="mail", queue="io", tenant="a"),
        "mail-b": make(task="mail", queue="io", tenant="b"),
        "pdf-a": make(task="pdf", queue="cpu", tenant="a"),
        "pdf-b": make(task="pdf", queue="cpu", tenant="b"),
    }
    await backend.submit(list(jobs.values()))
    await claim_one(backend, queue="cpu")  # one pdf job runs

    async def listed(**flt: Any) -> set[str]:
        page = await backend.list_jobs(JobFilter(**flt))
        names = {j.id: name for name, j in jobs.items()}
        return {names[j.id] for j in page.jobs}

    assert await listed() == set(jobs)
    assert await listed(task="mail") == {"mail-a", "mail-b"}
    assert await listed(queue="cpu") == {"pdf-a", "pdf-b"}
    assert await listed(tenant="a") == {"mail-a", "pdf-a"}
    assert await listed(task="pdf", tenant="b") == {"pdf-b"}
    assert len(await listed(status=State.RUNNING, queue="cpu")) == 1
    assert len(await listed(status=State.QUEUED)) == 3
    assert await listed(status=State.FAILED) == set()
    assert await listed(task="nope") == set()


async def test_list_jobs_is_newest_first_and_pages_visit_every_job_once(
    backend: Backend, clock: ManualClock, make: MakeJob
) -> None:
    submitted: list[str] = []
    for batch in range(6):  # several jobs share each creation time
        records = await backend.submit([make(queue="q" if n % 2 else "p") for n in range(4)])
        submitted.extend(r.id for r in records)
        clock.advance(1 + batch)
    submitted.extend(r.id for r in await backend.submit([make(queue="q")]))
    newest_first = await backend.list_jobs(JobFilter(limit=100))
    assert newest_first.next_cursor is None
    times = [j.created_at for j in newest_first.jobs]
    assert times == sorted(times, reverse=True)
    assert {j.id for j in newest_first.jobs} == set(submitted)

    for flt in (JobFilter(limit=5), JobFilter(limit=3, queue="q"), JobFilter(limit=1)):
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = await backend.list_jobs(
                JobFilter(queue=flt.queue, limit=flt.limit, cursor=cursor)
            )
            assert len(page.jobs) <= flt.limit
            seen.extend(j.id for j in page.jobs)
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = [j.id for j in newest_first.jobs if flt.queue in (None, j.queue)]
        assert seen == expected


async def test_stats_count_jobs_per_queue_and_state(backend: Backend, make: MakeJob) -> None:
    await backend.submit([make(queue="a"), make(queue="a"), make(queue="a", delay=60)])
    await backend.submit([make(queue="b") for _ in range(4)])
    await claim_one(backend, queue="b")  # stays running
    _, done = await claim_one(backend, queue="b")
    _, failed = await claim_one(backend, queue="b")
    await backend.complete(done, None)
    await backend.fail(failed, {"type": "E", "message": "x"})
    stats = {s.queue: s for s in await backend.stats()}
    a, b = stats["a"], stats["b"]
    assert (a.count(State.QUEUED), a.count(State.SCHEDULED), a.count(State.RUNNING)) == (2, 1, 0)
    assert [b.count(s) for s in State] == [
        {State.QUEUED: 1, State.RUNNING: 1, State.SUCCEEDED: 1, State.FAILED: 1}.get(s, 0)
        for s in State
    ]
    assert set(stats) == {"a", "b"}
