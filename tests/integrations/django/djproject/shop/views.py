from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from shop import tasks


def send_receipt(request: HttpRequest, order: int) -> JsonResponse:
    """Answers at once; the receipt goes out on the worker once the order is committed."""
    with transaction.atomic():
        result = tasks.send_receipt.enqueue(order)
    return JsonResponse({"id": result.id, "status": result.status}, status=202)


def status(request: HttpRequest, result_id: str) -> JsonResponse:
    result = tasks.send_receipt.get_result(result_id)
    body = {"id": result.id, "status": result.status}
    if result.is_finished and not result.errors:
        body["value"] = result.return_value
    return JsonResponse(body)
