"""offload's HTTP API and dashboard in a Django project's ASGI application.

::

    # mysite/asgi.py
    from django.core.asgi import get_asgi_application
    from offload.integrations.django.asgi import with_offload

    application = with_offload(get_asgi_application())

Requests for the service's paths (``/v1/...``, ``/dashboard/...``, ``/health/...``,
``/metrics``, ``/openapi.json``) go to ``offload serve``'s own application, the dashboard page
is served at ``dashboard`` (``/offload/``), and everything else goes to Django. The service
reads and writes the jobs of the ``TASKS`` entry ``alias``; protect it with ``OFFLOAD_TOKENS``
as ``offload serve`` (see docs/guide/http-api.md). Needs ``offload[server]``.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from offload.integrations.django.backend import offload_backend

#: The paths of ``offload serve`` other than its dashboard page (``/``).
SERVICE_PATHS = ("/v1/", "/dashboard/", "/health/", "/metrics", "/openapi.json")


class OffloadASGI:
    """Sends the service's requests to offload and the rest to ``django``."""

    def __init__(self, django: ASGIApp, service: ASGIApp, dashboard: str) -> None:
        self.django = django
        self.service = service
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # Django has none; the service opens its backend
            await self.service(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path in (self.dashboard, self.dashboard.rstrip("/")):
            await self.service({**scope, "path": "/", "raw_path": b"/"}, receive, send)
        elif path.startswith(SERVICE_PATHS):
            await self.service(scope, receive, send)
        else:
            await self.django(scope, receive, send)


def with_offload(
    django: ASGIApp, *, alias: str = "default", dashboard: str = "/offload/", **service: Any
) -> OffloadASGI:
    """``django`` with offload's HTTP API and dashboard beside it (see the module's notes).

    ``service`` options go to :func:`offload.service.app.create_app` (``tokens``, ``config``).
    """
    from offload.service.app import create_app

    backend = offload_backend(alias)
    if not dashboard.startswith("/") or dashboard.startswith(SERVICE_PATHS):
        raise ValueError(f"dashboard must be a path like '/offload/', not {dashboard!r}")
    return OffloadASGI(django, create_app(backend.app, **service), dashboard)
