"""The report, as a django.tasks task: the worker builds it and stores it on its row."""

from __future__ import annotations

from reports.models import Report
from reports.render import render

try:
    from django.tasks import task
except ImportError:  # before Django 6: the django-tasks backport
    from django_tasks import task


@task(queue_name="reports")
def build_report(report_id: int) -> str:
    report = Report.objects.get(pk=report_id)  # committed: the task was enqueued on commit
    report.body = render(report.client, report.rows)
    report.save(update_fields=["body"])
    return str(report.body["sha256"])
