"""offload's HTTP API and dashboard beside a Django project in one ASGI application."""

from __future__ import annotations

import httpx
import pytest
from django.core.asgi import get_asgi_application
from shop import tasks

from offload.integrations.django import OffloadBackend
from offload.integrations.django._compat import task_backends
from offload.integrations.django.asgi import with_offload


async def test_service_paths_go_to_offload_and_the_rest_to_django(offload_url: str) -> None:
    result = await tasks.send_receipt.aenqueue(5)
    application = with_offload(get_asgi_application())
    transport = httpx.ASGITransport(app=application)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            job = (await http.get(f"/v1/jobs/{result.id}")).json()
            assert (job["task"], job["status"], job["args"]) == (
                "shop.tasks.send_receipt",
                "queued",
                [5],
            )
            dashboard = await http.get("/offload/")
            assert "/dashboard/app.js" in dashboard.text
            assert (await http.get("/dashboard/app.js")).status_code == 200
            assert (await http.get("/health/live")).status_code == 200
            status = (await http.get(f"/results/{result.id}")).json()  # a Django view
            assert status == {"id": result.id, "status": "READY"}
    finally:
        backend = task_backends["default"]
        assert isinstance(backend, OffloadBackend)
        await backend.app.aclose()


def test_the_dashboard_path_must_not_hide_the_service(offload_url: str) -> None:
    with pytest.raises(ValueError, match="a path like '/offload/', not '/v1/x'"):
        with_offload(get_asgi_application(), dashboard="/v1/x")
