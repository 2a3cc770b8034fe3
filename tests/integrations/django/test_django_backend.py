"""offload as a django.tasks backend, in process: enqueue, validation, transactions, results."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from shop import tasks
from tests_django_kit import PROJECT, jobs_in, tasks_setting

import offload
from offload.core.states import State
from offload.integrations.django import OffloadBackend
from offload.integrations.django._compat import (
    InvalidTaskError,
    Task,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    task,
    task_backends,
    task_enqueued,
)


def backend() -> OffloadBackend:
    found = task_backends["default"]
    assert isinstance(found, OffloadBackend)
    return found


def rolled_back(enqueue: Callable[[], object]) -> None:
    """Enqueue in a transaction that then fails (and rolls back)."""
    with transaction.atomic():
        enqueue()
        raise ZeroDivisionError


def test_declares_what_it_supports(offload_url: str) -> None:
    b = backend()
    assert (
        b.supports_defer,
        b.supports_async_task,
        b.supports_get_result,
        b.supports_priority,
    ) == (True, True, True, True)


def test_enqueue_stores_a_job_and_get_result_reads_it(offload_url: str) -> None:
    result = tasks.add.enqueue(2, b=3)
    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at is not None
    [job] = jobs_in(offload_url)
    assert (job.id, job.task, job.queue, job.status) == (
        result.id,
        "shop.tasks.add",
        "default",
        State.QUEUED,
    )
    again = tasks.add.get_result(result.id)
    assert again.status == TaskResultStatus.READY
    assert (again.args, again.kwargs, again.backend) == ([2], {"b": 3}, "default")
    assert again.task.func is tasks.add.func
    assert again.enqueued_at == result.enqueued_at


def test_priority_queue_and_run_after_reach_the_job(offload_url: str) -> None:
    later = timezone.now() + timedelta(hours=1)
    result = tasks.report.using(run_after=later).enqueue("q3")
    [job] = jobs_in(offload_url)
    assert (job.queue, job.priority, job.status) == ("reports", 10, State.SCHEDULED)
    assert job.run_at == pytest.approx(later.timestamp(), abs=0.01)
    read = backend().get_result(result.id)
    assert read.status == TaskResultStatus.READY
    assert (read.task.queue_name, read.task.priority) == ("reports", 10)
    assert read.task.run_after is not None
    assert read.task.run_after.timestamp() == pytest.approx(later.timestamp(), abs=0.01)


def test_a_task_enqueued_in_a_rolled_back_transaction_never_runs(offload_url: str) -> None:
    pending = []
    with pytest.raises(ZeroDivisionError):
        rolled_back(lambda: pending.append(tasks.add.enqueue(1, 2)))
    [result] = pending
    assert result.enqueued_at is None  # never submitted
    assert jobs_in(offload_url) == []
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result.id)


def test_a_task_enqueued_in_a_transaction_is_submitted_when_it_commits(offload_url: str) -> None:
    with transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        assert jobs_in(offload_url) == []
    [job] = jobs_in(offload_url)
    assert job.id == result.id
    assert result.enqueued_at is not None


def test_a_backend_down_at_commit_raises_after_the_transaction_committed() -> None:
    """What the guide warns of: the submit runs after the commit, so a backend that cannot be
    reached then raises from the end of the atomic block, with the rows already stored."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS down_at_commit (n integer)")
        cursor.execute("DELETE FROM down_at_commit")
    pending = []

    def insert_and_enqueue() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("INSERT INTO down_at_commit VALUES (1)")
            pending.append(tasks.add.enqueue(1, 2))

    down = tasks_setting("redis://127.0.0.1:1/0")  # nothing listens there
    with override_settings(TASKS=down), pytest.raises(offload.BackendUnavailable):
        insert_and_enqueue()
    [result] = pending
    assert result.enqueued_at is None  # never stored
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM down_at_commit")
        assert cursor.fetchone() == (1,)  # but the transaction's row was


def test_enqueue_on_commit_can_be_turned_off(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/off.db"
    with override_settings(TASKS=tasks_setting(url, enqueue_on_commit=False)):
        pending = []
        with pytest.raises(ZeroDivisionError):
            rolled_back(lambda: pending.append(tasks.add.enqueue(1, 2)))
        assert [j.id for j in jobs_in(url)] == [pending[0].id]


def test_arguments_must_be_json_and_fit_the_function(offload_url: str) -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks.add.enqueue(object(), 1)
    with pytest.raises(offload.InvalidArguments, match="b"):
        tasks.add.enqueue(1)
    assert jobs_in(offload_url) == []


def test_the_validation_django_expects(offload_url: str) -> None:
    with pytest.raises(InvalidTaskError, match="Queue 'nope' is not valid"):
        tasks.add.using(queue_name="nope")
    with pytest.raises(InvalidTaskError, match="priority"):
        tasks.add.using(priority=101)

    def local() -> None: ...

    with pytest.raises(InvalidTaskError, match="module level"):
        Task(func=local, priority=0, queue_name="default", backend="default", run_after=None)


def test_unknown_ids_and_jobs_of_other_tasks_do_not_exist(offload_url: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        backend().get_result("nope")
    app = offload.App(offload_url)
    app.task(name="plain")(lambda: None)
    job = app.run_sync(app.asubmit_name("plain"))
    app.close()
    with pytest.raises(TaskResultDoesNotExist, match="not a Django task"):
        backend().get_result(job.id)


async def test_the_async_faces(offload_url: str) -> None:
    result = await tasks.add.aenqueue(4, 5)
    read = await tasks.add.aget_result(result.id)
    assert (read.id, read.status, read.args) == (result.id, TaskResultStatus.READY, [4, 5])


def test_bad_options_say_what_to_fix(tmp_path: object) -> None:
    from django.core.exceptions import ImproperlyConfigured

    for options, message in (
        ({"retry": 2}, "unknown keys \\['retry'\\]; offload knows"),
        ({"retries": "2"}, "\\['retries'\\] must be int, not '2'"),
        ({"app": "x:app"}, "give 'backend' \\(a URL\\) or 'app'"),
    ):
        with (
            override_settings(TASKS=tasks_setting("memory://", **options)),
            pytest.raises(ImproperlyConfigured, match=message),
        ):
            task_backends["default"]


def test_task_enqueued_is_sent_once_the_job_is_stored(offload_url: str) -> None:
    seen: list[str] = []

    def receiver(sender: object, task_result: Any, **kwargs: object) -> None:
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        with transaction.atomic():
            result = tasks.add.enqueue(1, 2)
            assert seen == []
        assert seen == [result.id]
    finally:
        task_enqueued.disconnect(receiver)


# What Django's own tests (tests/tasks in Django, tests/ in django-tasks) check of a backend
# that can enqueue and read results, re-stated here: that suite needs Django's test runner and
# its own settings, so it does not run against this backend directly.
def test_a_fresh_result_is_ready_with_nothing_run_yet(offload_url: str) -> None:
    result = tasks.add.enqueue(1, 2)
    for read in (result, tasks.add.get_result(result.id)):
        assert (read.status, read.is_finished, read.attempts, read.worker_ids) == (
            TaskResultStatus.READY,
            False,
            0,
            [],
        )
        assert (read.started_at, read.last_attempted_at, read.finished_at) == (None, None, None)
        assert read.errors == []
        with pytest.raises(ValueError, match="Task has not finished yet"):
            read.return_value  # noqa: B018
        assert read.task.get_backend() is backend()


def test_results_of_another_task_do_not_match(offload_url: str) -> None:
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch, match=r"received 'shop\.tasks\.add'"):
        tasks.fail.get_result(result.id)


def test_run_after_must_be_aware_and_context_must_come_first(offload_url: str) -> None:
    with pytest.raises(InvalidTaskError, match="run_after must be an aware datetime"):
        tasks.add.using(run_after=datetime(2030, 1, 1))
    with pytest.raises(InvalidTaskError, match="first argument of 'context'"):
        task(takes_context=True)(tasks.plain_function)


def test_a_project_without_a_database_enqueues_at_once(offload_url: str) -> None:
    script = (
        "import django; django.setup(); from shop import tasks; print(tasks.add.enqueue(1, 2).id)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "djsite.settings_nodb"},
    )
    assert done.returncode == 0, done.stderr
    [job] = jobs_in(offload_url)
    assert job.id in done.stdout
