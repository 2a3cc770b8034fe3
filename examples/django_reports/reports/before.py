"""BEFORE: the view renders the report inline, inside the request.

Every request holds a gunicorn thread for the whole report (CPU, under the GIL of its
process), so under load every other request of that process waits, ``/health`` included, and
a client whose request times out has paid for a report it never gets.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from reports.forms import report_request
from reports.models import Report
from reports.render import render


@report_request
def create_report(request: HttpRequest, client: str, rows: int) -> JsonResponse:
    report = Report.objects.create(client=client, rows=rows, body=render(client, rows))
    return JsonResponse({"id": report.pk, "status": "SUCCESSFUL"}, status=201)
