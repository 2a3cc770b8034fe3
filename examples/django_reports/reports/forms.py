"""What a request for a report may ask, checked the same way by both versions."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

MAX_ROWS = 1_000_000


def read_request(request: HttpRequest) -> tuple[str, int] | str:
    """``(client, rows)``, or the message of a 400 answer."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return 'the body must be JSON, like {"client": "acme", "rows": 50000}'
    client, rows = body.get("client", "anonymous"), body.get("rows", 50_000)
    if not isinstance(client, str) or not isinstance(rows, int) or not 0 < rows <= MAX_ROWS:
        return f"client must be a string and rows a whole number from 1 to {MAX_ROWS}"
    return client, rows


ReportView = Callable[[HttpRequest, str, int], JsonResponse]


def report_request(view: ReportView) -> Callable[[HttpRequest], JsonResponse]:
    """A ``POST`` view given the checked ``client`` and ``rows`` (a bad request answers 400)."""

    @csrf_exempt
    @require_POST
    @wraps(view)
    def checked(request: HttpRequest) -> JsonResponse:
        asked = read_request(request)
        if isinstance(asked, str):
            return JsonResponse({"error": asked}, status=400)
        return view(request, *asked)

    return checked
