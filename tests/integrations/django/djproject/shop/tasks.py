"""Django tasks of the test project (module level, as django.tasks requires)."""

from __future__ import annotations

from typing import Any

from django.db import connection

try:
    from django.tasks import TaskContext, task
except ImportError:  # before Django 6: the django-tasks backport
    from django_tasks import TaskContext, task


class ReceiptError(Exception):
    """A failure the tests look for by its dotted path."""


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="reports", priority=10)
def report(name: str, *, rows: int = 3) -> dict[str, Any]:
    return {"name": name, "rows": list(range(rows))}


@task
def fail(message: str) -> None:
    raise ReceiptError(message)


@task(takes_context=True)
def attempt_number(context: TaskContext, wanted: int) -> int:
    """Fails until its ``wanted``-th run; returns the attempt that succeeded."""
    if context.attempt < wanted:
        raise ReceiptError(f"attempt {context.attempt}")
    return context.attempt


@task
async def shout(text: str) -> str:
    return text.upper()


@task
def connection_was_closed() -> bool:
    """Whether the job began without an open database connection, then uses one."""
    closed = connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return closed


@task
def send_receipt(order: int) -> str:
    return f"receipt {order} sent"


def plain_function(wanted: int) -> int:
    """Not a task: made into one (with takes_context) by a test that expects a refusal."""
    return wanted
