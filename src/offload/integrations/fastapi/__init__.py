"""offload inside an existing FastAPI application.

::

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    import offload
    from offload.integrations import fastapi as offload_fastapi

    jobs = offload.App("sqlite:///jobs.db")

    @jobs.task
    def render(doc_id: int) -> str: ...

    api = FastAPI(lifespan=offload_fastapi.lifespan(jobs, worker=True))
    offload_fastapi.mount(api, jobs)          # GET /jobs/{id}, GET /jobs/{id}/events, ...

    @api.post("/documents/{doc_id}/render")
    async def render_document(doc_id: int, request: Request) -> JSONResponse:
        job = await render.asubmit(doc_id)    # a few milliseconds, committed
        return offload_fastapi.accepted(job, request)   # 202, Location: /jobs/<id>

- :func:`mount` adds the HTTP API's job routes (``offload.service.routes_jobs``, the same
  handlers) under a prefix. Their errors answer in the service's shape
  (``{"error": {"code", "message", "details"}}``); the rest of the application keeps its own
  error handlers.
- :data:`OffloadApp` (or :func:`use_app`) hands the App to endpoints as a dependency.
- :func:`lifespan` opens and closes the App's backend with the application and, with
  ``worker=True``, runs an embedded worker in the web process (small deployments).
- :func:`accepted` answers 202 with the job, in the service's JSON, and its ``Location``.
- :func:`handle_errors` (done by :func:`mount` unless ``error_handlers=False``) answers offload's
  exceptions raised in the application's own endpoints as the HTTP API does: ``JobNotFound``
  404, ``InvalidArguments`` and ``TaskNotFound`` 422, ``BackendUnavailable`` 503 with
  ``Retry-After``. ``await jobs.aping()`` in a health route is then a readiness check.
"""

from offload.integrations.fastapi.answers import accepted, handle_errors
from offload.integrations.fastapi.deps import OffloadApp, get_app, use_app
from offload.integrations.fastapi.lifecycle import lifespan
from offload.integrations.fastapi.request_id import RequestIdMiddleware
from offload.integrations.fastapi.routes import mount

__all__ = [
    "OffloadApp",
    "RequestIdMiddleware",
    "accepted",
    "get_app",
    "handle_errors",
    "lifespan",
    "mount",
    "use_app",
]
