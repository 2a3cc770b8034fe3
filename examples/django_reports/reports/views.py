"""AFTER: the view stores the request and enqueues the report; a status page follows it."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from reports.forms import report_request
from reports.models import Report
from reports.tasks import build_report


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@report_request
def create_report(request: HttpRequest, client: str, rows: int) -> JsonResponse:
    with transaction.atomic():  # the job is submitted when this commits, never before
        report = Report.objects.create(client=client, rows=rows)
        result = build_report.enqueue(report.pk)
        report.task_id = result.id
        report.save(update_fields=["task_id"])
    answer = JsonResponse({"id": report.pk, "status": result.status}, status=202)
    answer["Location"] = f"/reports/{report.pk}"
    return answer


@require_GET
def report_status(request: HttpRequest, report_id: int) -> JsonResponse:
    report = get_object_or_404(Report, pk=report_id)
    body: dict[str, object] = {"id": report.pk, "client": report.client, "rows": report.rows}
    if not report.task_id:  # built inline by the before version
        return JsonResponse({**body, "status": "SUCCESSFUL", "report": report.body})
    result = build_report.get_result(report.task_id)
    body |= {"status": result.status, "attempts": result.attempts}
    if result.status == "SUCCESSFUL":
        body["report"] = report.body
    elif result.status == "FAILED":
        body["error"] = result.errors[-1].traceback.splitlines()[-1]
    return JsonResponse(body)
