"""TaskResult read from offload after a worker ran the job: states, values, errors, attempts,
and fresh database connections around every job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone
from shop import tasks
from tests_django_kit import tasks_setting

import offload
from offload.integrations.django import OffloadBackend
from offload.integrations.django._compat import (
    TaskResultStatus,
    task_backends,
    task_finished,
    task_started,
)
from offload.integrations.django.results import path_of
from offload.integrations.django.worker import WorkerOptions, build_worker


@pytest.fixture
def retrying(any_offload_url: str) -> Iterator[str]:
    """The project's backend with two retries for every Django task."""
    with override_settings(TASKS=tasks_setting(any_offload_url, retries=2)):
        yield any_offload_url


async def work_off(*ids: str, seconds: float = 20.0) -> list[Any]:
    """Run a worker in this process until the results of ``ids`` are finished; return them."""
    backend = task_backends["default"]
    assert isinstance(backend, OffloadBackend)
    worker = build_worker(backend, WorkerOptions(concurrency=1))
    running = asyncio.create_task(worker.run())
    deadline = time.monotonic() + seconds
    try:
        while True:
            results = [await backend.aget_result(i) for i in ids]
            if all(r.is_finished for r in results) or time.monotonic() > deadline:
                return results
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await running


async def test_a_success_maps_value_times_and_worker(any_offload_url: str) -> None:
    result = await tasks.add.aenqueue(2, 3)
    [done] = await work_off(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == 5
    assert done.errors == []
    assert done.attempts == 1
    assert done.enqueued_at <= done.started_at == done.last_attempted_at <= done.finished_at
    await result.arefresh()  # the caller's own result catches up
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 5)


async def test_a_failure_keeps_the_exception_class_and_traceback(any_offload_url: str) -> None:
    result = await tasks.fail.aenqueue("printer on fire")
    [done] = await work_off(result.id)
    assert done.status == TaskResultStatus.FAILED
    [error] = done.errors
    assert error.exception_class is tasks.ReceiptError
    assert "printer on fire" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        done.return_value  # noqa: B018


async def test_retries_count_attempts_and_the_context_sees_them(retrying: str) -> None:
    result = await tasks.attempt_number.aenqueue(2)
    [done] = await work_off(result.id)
    assert (done.status, done.return_value, done.attempts) == (TaskResultStatus.SUCCESSFUL, 2, 2)
    [error] = done.errors  # the first run's
    assert "attempt 1" in error.traceback


async def test_an_async_task_and_priorities_and_queues(any_offload_url: str) -> None:
    loud = await tasks.shout.aenqueue("hi")
    report = await tasks.report.aenqueue("q1", rows=2)
    done = await work_off(loud.id, report.id)
    assert [r.return_value for r in done] == ["HI", {"name": "q1", "rows": [0, 1]}]
    assert (done[1].task.queue_name, done[1].task.priority) == ("reports", 10)


async def test_a_cancelled_job_reads_as_failed(any_offload_url: str) -> None:
    later = timezone.now() + timedelta(hours=1)
    result = await tasks.add.using(run_after=later).aenqueue(1, 1)
    app = offload.App(any_offload_url)
    await app.acancel(result.id)
    await app.aclose()
    await result.arefresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is offload.JobCancelled


async def test_every_job_starts_without_the_last_jobs_connection(offload_url: str) -> None:
    """A worker thread lives long; like a request, each job closes old connections before and
    after it (CONN_MAX_AGE=0 here), so no job inherits a connection a previous one opened."""
    first = await tasks.connection_was_closed.aenqueue()
    [done] = await work_off(first.id)
    second = await tasks.connection_was_closed.aenqueue()
    third = await tasks.connection_was_closed.aenqueue()
    done = [done, *await work_off(second.id, third.id)]
    assert [r.return_value for r in done] == [True, True, True]


@pytest.mark.parametrize(
    ("name", "text", "path"),
    [
        (
            "ValueError",
            "Traceback ...\nValueError: bad\nmore of the message",
            "builtins.ValueError",
        ),
        ("ReceiptError", "Traceback ...\nshop.tasks.ReceiptError: x", "shop.tasks.ReceiptError"),
        ("Gone", "no traceback kept", "Gone"),
        (None, "an earlier run's message", "builtins.Exception"),
    ],
)
def test_the_exception_path_is_read_from_the_traceback(
    name: str | None, text: str, path: str
) -> None:
    assert path_of(name, text) == path


@pytest.fixture
def signalled() -> Iterator[list[tuple[str, str, Any]]]:
    """(signal, status, result) of every task_started and task_finished sent."""
    seen: list[tuple[str, str, Any]] = []

    def started(sender: object, task_result: Any, **kwargs: object) -> None:
        seen.append(("started", task_result.status, task_result))

    def finished(sender: object, task_result: Any, **kwargs: object) -> None:
        seen.append(("finished", task_result.status, task_result))

    task_started.connect(started)
    task_finished.connect(finished)
    yield seen
    task_started.disconnect(started)
    task_finished.disconnect(finished)


async def test_the_worker_sends_task_started_and_task_finished(
    offload_url: str, signalled: list[tuple[str, str, Any]]
) -> None:
    good = await tasks.add.aenqueue(1, 1)
    [done] = await work_off(good.id)
    bad = await tasks.fail.aenqueue("jammed")
    await work_off(bad.id)
    assert [(name, status) for name, status, _ in signalled] == [
        ("started", "RUNNING"),
        ("finished", "SUCCESSFUL"),
        ("started", "RUNNING"),
        ("finished", "FAILED"),
    ]
    assert signalled[1][2].id == good.id
    assert signalled[1][2].return_value == 2
    assert signalled[1][2].worker_ids == done.worker_ids
    [error] = signalled[3][2].errors
    assert error.exception_class is tasks.ReceiptError
