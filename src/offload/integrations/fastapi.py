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

from __future__ import annotations

import asyncio
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, APIRouter
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offload import tracing
from offload.client import App
from offload.console import parse_queues
from offload.errors import BackendUnavailable, ConfigurationError
from offload.jobs import Job
from offload.logs import REQUEST_ID, request_id_from
from offload.service import routes_jobs
from offload.service.auth import TokenTable
from offload.service.config import ServiceConfig
from offload.service.deps import ServiceState
from offload.service.errors import TRANSLATED, install_error_handlers, translate
from offload.service.metrics import Metrics
from offload.service.ratelimit import RateLimiter
from offload.service.schemas import JobOut
from offload.worker.worker import Worker

__all__ = [
    "OffloadApp", "RequestIdMiddleware", "accepted", "get_app", "handle_errors", "lifespan",
    "mount", "use_app",
]  # fmt: skip

log = logging.getLogger("offload.integrations.fastapi")

_SERVICE_PREFIX = "/v1/jobs"  # where routes_jobs lives in `offload serve`
#: Retry-After (seconds) of a 503 when the backend is unavailable, as ``offload serve`` answers
UNAVAILABLE_RETRY_AFTER = ServiceConfig().unavailable_retry_after

ErrorHandler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


# -- mounting the job routes -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Mount:
    """What the mounted routes need besides the service state (on ``api.state.offload_mount``)."""

    prefix: str
    handlers: dict[type, ErrorHandler]  # the service's, by exception class

    async def error(self, request: Request, exc: Exception) -> Response:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return await handler(request, exc)
        raise exc  # not an Exception subclass: unreachable (Exception has a handler)

    def relocate(self, request: Request, response: Response) -> None:
        """Point a ``Location`` the service handlers set (``/v1/jobs/<id>``) under the mount."""
        location = response.headers.get("location")
        if location and location.startswith(_SERVICE_PREFIX + "/"):
            job_id = location.removeprefix(_SERVICE_PREFIX + "/")
            response.headers["location"] = _location(request, self.prefix, job_id)


class _JobRoute(APIRoute):
    """A service job route that answers its errors in the service's shape, without touching
    the application's own exception handlers, and names its jobs under the mount's prefix."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            mount: _Mount = request.app.state.offload_mount
            state = request.scope.setdefault("state", {})
            state.setdefault("request_id", request_id_from(request.headers.get("x-request-id")))
            try:
                response = await handle(request)
            except Exception as exc:
                return await mount.error(request, exc)
            mount.relocate(request, response)
            return response

        return route


def mount(
    api: FastAPI,
    app: App,
    *,
    prefix: str = "/jobs",
    tokens: TokenTable | None = None,
    config: ServiceConfig | None = None,
    dependencies: Sequence[Any] | None = None,
    error_handlers: bool = True,
) -> None:
    """Serve the job routes of ``app`` in ``api`` under ``prefix``.

    ``POST {prefix}`` (submit by task name), ``GET {prefix}`` (list), ``GET {prefix}/{id}``,
    ``POST {prefix}/{id}/cancel``, ``POST {prefix}/{id}/retry``, ``GET {prefix}/{id}/history``
    and ``GET {prefix}/{id}/events`` (Server-Sent Events): the handlers of ``offload serve``,
    with the same bodies, status codes and error shape.

    ``tokens`` work as in :func:`offload.service.create_app` (default: ``OFFLOAD_TOKENS``;
    none: every caller is the anonymous admin of tenant ``default``). ``dependencies`` run
    before every job route, e.g. ``[Depends(require_staff)]`` to put them behind your own
    authentication. ``config`` sets the rate limit and the event stream's timings (the body
    size limit of ``offload serve`` is its middleware's, not applied here).

    Every request of ``api`` gets an id (:class:`RequestIdMiddleware`). With
    ``error_handlers`` (the default) the whole application answers offload's exceptions
    as the HTTP API does (see :func:`handle_errors`).

    One offload mount per application: the routes keep their state on ``api.state``.
    """
    prefix = _check_prefix(prefix)
    if getattr(api.state, "service", None) is not None:
        raise ConfigurationError(
            "this FastAPI application already serves offload job routes; mount() once per app"
        )
    config = config or ServiceConfig()
    api.state.service = ServiceState(
        app=app,
        tokens=tokens if tokens is not None else TokenTable.from_setting(app.settings.tokens),
        config=config,
        metrics=Metrics(),
        limiter=RateLimiter(config.rate_limit, config.rate_burst),
    )
    api.state.offload_mount = _Mount(prefix, _service_error_handlers(config))
    _register(api, app)
    router = APIRouter(prefix=prefix, route_class=_JobRoute, dependencies=list(dependencies or ()))
    for route in routes_jobs.router.routes:
        if not isinstance(route, APIRoute):
            continue
        router.add_api_route(
            route.path.removeprefix(_SERVICE_PREFIX),
            route.endpoint,
            methods=sorted(route.methods or ()),
            status_code=route.status_code,
            response_model=route.response_model,
            response_class=route.response_class,
            responses=route.responses,
            name=f"offload_{route.name}",
            description=route.description,
            tags=route.tags,
        )
    api.include_router(router)
    api.add_middleware(RequestIdMiddleware)
    if app.settings.tracing:  # the jobs a request submits join its trace (W3C traceparent)
        api.add_middleware(tracing.TraceContextMiddleware)
    if error_handlers:
        handle_errors(api, retry_after=config.unavailable_retry_after)


def _service_error_handlers(config: ServiceConfig) -> dict[type, ErrorHandler]:
    """The service's exception handlers (the very functions ``create_app`` installs)."""
    scratch = FastAPI(openapi_url=None)
    install_error_handlers(scratch, retry_after=config.unavailable_retry_after)
    return {
        key: handler  # type: ignore[misc]
        for key, handler in scratch.exception_handlers.items()
        if isinstance(key, type)
    }


def handle_errors(api: Starlette, *, retry_after: int = UNAVAILABLE_RETRY_AFTER) -> None:
    """Answer offload's exceptions raised anywhere in ``api`` as the HTTP API does, in its
    shape ``{"error": {"code", "message", "details"}}``: ``JobNotFound`` 404,
    ``TaskNotFound`` and ``InvalidArguments`` 422, ``IdempotencyConflict`` and
    ``InvalidTransition`` 409, ``BackendError`` (``BackendUnavailable``) 503 with
    ``Retry-After: <retry_after>``.

    A handler the application already has for one of these classes is kept, and one it
    registers later replaces offload's. Other exceptions (``HTTPException``, validation
    errors, your own) keep the application's handling.
    """

    async def on_offload_error(request: Request, exc: Exception) -> Response:
        return translate(exc, retry_after=retry_after).response()

    for exc_class in TRANSLATED:
        if exc_class not in api.exception_handlers:
            api.add_exception_handler(exc_class, on_offload_error)


def _check_prefix(prefix: str) -> str:
    prefix = prefix.rstrip("/")
    if not prefix.startswith("/"):
        raise ConfigurationError(f"prefix must start with '/', like '/jobs' (got {prefix!r})")
    return prefix


def _location(request: Request, prefix: str, job_id: str) -> str:
    """The URL path of job ``job_id`` under ``prefix`` (behind the app's ``root_path``)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return f"{root}{prefix.rstrip('/')}/{job_id}"


def accepted(job: Job, request: Request, *, prefix: str = "/jobs") -> JSONResponse:
    """202 Accepted with ``job`` as the service shows it and ``Location: {prefix}/{id}``.

    Pass the ``prefix`` given to :func:`mount` when it is not the default.
    """
    return JSONResponse(
        JobOut.of(job.record).model_dump(mode="json"),
        status_code=202,
        headers={"Location": _location(request, prefix, job.id)},
    )


class RequestIdMiddleware:
    """Give every HTTP request an id: the client's ``X-Request-ID`` if sane, else a new one.

    While the request is served the id is in ``offload.logs.REQUEST_ID``, so that JSON log
    lines (uvicorn's access line included) carry it and the jobs the request submits keep it
    in their meta (their worker's lines carry it too); it is also ``request.state.request_id``
    and the answer's ``X-Request-ID``. :func:`mount` adds it; without ``mount``,
    ``api.add_middleware(RequestIdMiddleware)``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", ())).get(b"x-request-id", b"").decode("latin-1")
        request_id = request_id_from(given)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        serving = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(serving)


# -- the App as a dependency -------------------------------------------------------------------
def _register(api: Starlette, app: App) -> None:
    apps: list[App] = getattr(api.state, "offload_apps", [])
    if not any(known is app for known in apps):
        api.state.offload_apps = [*apps, app]


async def get_app(request: Request) -> App:
    """The offload App that :func:`mount` or :func:`lifespan` attached to this application.

    Override it in tests with ``api.dependency_overrides[get_app] = ...``.
    """
    apps: list[App] = getattr(request.app.state, "offload_apps", [])
    if len(apps) != 1:
        found = "none" if not apps else f"{len(apps)} of them"
        raise ConfigurationError(
            f"OffloadApp needs exactly one offload App attached to the application ({found}): "
            "use mount() or lifespan(), or Depends(use_app(app)) to name one"
        )
    return apps[0]


#: ``async def create(jobs: OffloadApp): job = await jobs.asubmit_name("render", [42])``
OffloadApp = Annotated[App, Depends(get_app)]


def use_app(app: App) -> Callable[[], Awaitable[App]]:
    """A dependency that gives endpoints ``app``: ``Annotated[offload.App,
    Depends(use_app(jobs))]``. Async, so FastAPI calls it without a thread hop; keep the
    returned function to override it in tests."""

    async def offload_app() -> App:
        return app

    return offload_app


# -- lifespan and the embedded worker ----------------------------------------------------------
Queues = str | Mapping[str, int | None] | Iterable[str]


def lifespan(
    app: App,
    *,
    worker: bool = False,
    concurrency: int | None = None,
    queues: Queues | None = None,
    shutdown_grace: float | None = None,
    app_path: str | None = None,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that opens ``app``'s backend at startup and
    closes it at shutdown. Compose it with your own::

        @asynccontextmanager
        async def my_lifespan(api: FastAPI):
            async with offload_fastapi.lifespan(jobs, worker=True)(api):
                yield

    With ``worker=True`` a :class:`~offload.worker.worker.Worker` runs inside the web process,
    on its event loop, with ``concurrency`` slots (default ``OFFLOAD_CONCURRENCY``) serving
    ``queues`` (``"pdf:2,default"``, a mapping of caps, or names; default: every queue of the
    app's tasks). At shutdown it claims nothing more, gives running jobs ``shutdown_grace``
    seconds (default ``OFFLOAD_SHUTDOWN_GRACE``, 25) and releases the rest to the queue,
    their attempt not charged: nothing is lost. Keep blocking code in ``def`` tasks (thread
    executor): an ``async def`` task that blocks would block the web requests too. Tasks
    with ``executor="process"`` need ``app_path`` (``"module:attribute"``).
    """
    caps = parse_queues(queues) if isinstance(queues, str) else queues

    @asynccontextmanager
    async def run(api: Starlette) -> AsyncIterator[None]:
        _register(api, app)
        try:
            await app.backend()
        except BackendUnavailable as exc:  # serve (503s from the job routes) until it is back
            log.warning("offload backend unavailable at startup: %s", exc)
        embedded = (
            _start_worker(app, concurrency, caps, shutdown_grace, app_path) if worker else None
        )
        try:
            yield
        finally:
            if embedded is not None:
                await _stop_worker(*embedded)
            await app.aclose()

    return run


def _start_worker(
    app: App,
    concurrency: int | None,
    queues: Mapping[str, int | None] | Iterable[str] | None,
    shutdown_grace: float | None,
    app_path: str | None,
) -> tuple[Worker, asyncio.Task[None]]:
    settings = app.settings
    if shutdown_grace is not None:
        settings = settings.with_(shutdown_grace=shutdown_grace)
    if queues is not None and not isinstance(queues, Mapping):
        queues = dict.fromkeys(queues)
    worker = Worker(app, queues=queues, concurrency=concurrency, name="embedded",
                    app_path=app_path, settings=settings)  # fmt: skip
    task = asyncio.create_task(worker.run(), name="offload-embedded-worker")
    task.add_done_callback(_report_worker_end)
    return worker, task


def _report_worker_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the embedded offload worker stopped", exc_info=task.exception())


async def _stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    """Stop claiming, let running jobs finish within the grace, release the rest."""
    worker.stop()
    await asyncio.gather(task, return_exceptions=True)  # its failure was logged when it ended
