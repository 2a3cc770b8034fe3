"""``mount``: the HTTP API's job routes (``offload.service.routes_jobs``) inside an application."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute, APIRouter
from starlette.responses import Response

from offload import tracing
from offload.api.auth import TokenTable
from offload.client import App
from offload.errors import ConfigurationError
from offload.integrations.fastapi.answers import handle_errors
from offload.integrations.fastapi.deps import register
from offload.integrations.fastapi.request_id import RequestIdMiddleware
from offload.logs import request_id_from
from offload.service import routes_jobs
from offload.service.config import ServiceConfig
from offload.service.deps import ServiceState
from offload.service.errors import install_error_handlers
from offload.service.metrics import Metrics
from offload.service.ratelimit import RateLimiter

_SERVICE_PREFIX = "/v1/jobs"  # where routes_jobs lives in `offload serve`
_ROUTE_NAME = "offload_{}"  # a mounted job route's name: the service's, kept apart from the app's

ErrorHandler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


# -- mounting the job routes -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Mount:
    """What the mounted routes need besides the service state (on ``api.state.offload_mount``)."""

    handlers: dict[type, ErrorHandler]  # the service's, by exception class

    async def error(self, request: Request, exc: Exception) -> Response:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return await handler(request, exc)
        raise exc  # not an Exception subclass: unreachable (Exception has a handler)


class _JobRoute(APIRoute):
    """A service job route that answers its errors in the service's shape, without touching
    the application's own exception handlers. (Its ``Location`` headers name the mounted job
    route: see ``ServiceState.job_route``.)"""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            mount: _Mount = request.app.state.offload_mount
            state = request.scope.setdefault("state", {})
            state.setdefault("request_id", request_id_from(request.headers.get("x-request-id")))
            try:
                return await handle(request)
            except Exception as exc:
                return await mount.error(request, exc)

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
        job_route=_ROUTE_NAME.format(routes_jobs.get_job.__name__),
    )
    api.state.offload_mount = _Mount(_service_error_handlers(config))
    register(api, app)
    api.include_router(_job_router(prefix, dependencies))
    api.add_middleware(RequestIdMiddleware)
    if app.settings.tracing:  # the jobs a request submits join its trace (W3C traceparent)
        api.add_middleware(tracing.TraceContextMiddleware)
    if error_handlers:
        handle_errors(api, retry_after=config.unavailable_retry_after)


def _job_router(prefix: str, dependencies: Sequence[Any] | None) -> APIRouter:
    """The service's job routes, under ``prefix`` and the names of :data:`_ROUTE_NAME`."""
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
            name=_ROUTE_NAME.format(route.name),
            description=route.description,
            tags=route.tags,
        )
    return router


def _service_error_handlers(config: ServiceConfig) -> dict[type, ErrorHandler]:
    """The service's exception handlers (the very functions ``create_app`` installs)."""
    scratch = FastAPI(openapi_url=None)
    install_error_handlers(scratch, retry_after=config.unavailable_retry_after)
    return {
        key: handler  # type: ignore[misc]
        for key, handler in scratch.exception_handlers.items()
        if isinstance(key, type)
    }


def _check_prefix(prefix: str) -> str:
    prefix = prefix.rstrip("/")
    if not prefix.startswith("/"):
        raise ConfigurationError(f"prefix must start with '/', like '/jobs' (got {prefix!r})")
    return prefix
