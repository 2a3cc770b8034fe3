"""The HTTP API: a FastAPI application around an :class:`offload.App`.

Install the extra (``pip install 'offload[server]'``), write a module that builds the
application, and run it with uvicorn::

    # myservice.py
    from offload.loader import load_app
    from offload.service import create_app

    api = create_app(load_app("myapp.tasks:app"))

    $ OFFLOAD_TOKENS="s3cr3t=acme:admin" uvicorn myservice:api --host 0.0.0.0 --port 8000
    $ offload worker myapp.tasks:app          # beside it: API and workers meet in the backend

Without ``OFFLOAD_TOKENS`` every request is the anonymous admin of tenant ``default``: bind to
127.0.0.1 only. Token format, roles and tenancy: :mod:`offload.api.auth`; limits (body
size, rate, SSE timings): :class:`ServiceConfig`.

Routes: ``/v1/jobs`` and below (:mod:`~offload.service.routes_jobs`); ``/v1/tasks``,
``/v1/queues``, ``/v1/workers``, ``/health/live``, ``/health/ready`` and ``/metrics``
(:mod:`~offload.service.routes_ops`); OpenAPI at ``/openapi.json``. Errors always answer
``{"error": {"code", "message", "details"}}`` (:mod:`~offload.api.errors`).
"""

from __future__ import annotations

from offload.api.auth import Principal, Role, TokenTable
from offload.service.app import create_app
from offload.service.config import ServiceConfig

__all__ = ["Principal", "Role", "ServiceConfig", "TokenTable", "create_app"]
