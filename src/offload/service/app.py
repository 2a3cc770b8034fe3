"""``create_app``: the FastAPI application serving one offload App."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from offload import tracing
from offload._version import __version__
from offload.api.auth import TokenTable
from offload.client import App
from offload.errors import BackendUnavailable
from offload.service import routes_dash, routes_jobs, routes_ops
from offload.service.config import ServiceConfig
from offload.service.dashboard import router as dashboard
from offload.service.deps import Reader, ServiceState
from offload.service.errors import install_error_handlers
from offload.service.metrics import Metrics
from offload.service.middleware import (
    BodyLimitMiddleware,
    LoopbackHostMiddleware,
    RequestContextMiddleware,
)
from offload.service.ratelimit import RateLimiter
from offload.settings import Settings

log = logging.getLogger("offload.service")


def create_app(
    app: App,
    *,
    settings: Settings | None = None,
    tokens: TokenTable | None = None,
    config: ServiceConfig | None = None,
    not_ready: Callable[[], str | None] | None = None,
) -> FastAPI:
    """Build the HTTP API of ``app``.

    ``tokens`` default to ``settings.tokens`` (``OFFLOAD_TOKENS``, see
    :mod:`offload.api.auth`), and ``settings`` to ``app.settings``. With no tokens every
    caller is the anonymous admin of tenant ``default``. The lifespan opens the app's backend
    and closes it; every piece of state lives on ``fastapi_app.state.service``. ``not_ready``
    adds to the readiness probe: it returns why the service is not ready, or None.
    """
    settings = settings or app.settings
    config = config or ServiceConfig()
    state = ServiceState(
        app=app,
        tokens=tokens if tokens is not None else TokenTable.from_setting(settings.tokens),
        config=config,
        metrics=Metrics(),
        limiter=RateLimiter(config.rate_limit, config.rate_burst),
        not_ready=not_ready,
    )
    secured = state.tokens.enabled
    api = FastAPI(
        title="offload",
        version=__version__,
        description="Background jobs: submit, follow, cancel and retry jobs of registered tasks.",
        lifespan=_lifespan(app),
        # Without tokens (a developer's machine) /openapi.json, /docs and /redoc are served
        # as usual. With tokens: no /docs or /redoc (their pages load scripts from a public
        # CDN), and /openapi.json only for a token (see _serve_schema_to_readers).
        openapi_url=None if secured else "/openapi.json",
        docs_url=None if secured else "/docs",
        redoc_url=None if secured else "/redoc",
    )
    api.state.service = state
    if secured:
        _serve_schema_to_readers(api)
    install_error_handlers(api, retry_after=config.unavailable_retry_after)
    routers = (
        routes_jobs.router,
        routes_ops.router,
        routes_dash.router,
        routes_ops.probes,
        dashboard,
    )
    for router in routers:
        api.include_router(router)
    # Requests refused by middleware never reach the router: match them here for metrics.
    _add_middleware(api, state, [route for router in routers for route in router.routes])
    return api


def _lifespan(app: App) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open ``app``'s backend at startup (serving 503s if it is down) and close it at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await app.backend()
        except BackendUnavailable as exc:  # serve 503s until it comes back
            log.warning("backend unavailable at startup: %s", exc)
        try:
            yield
        finally:
            await app.aclose()

    return lifespan


def _add_middleware(api: FastAPI, state: ServiceState, known: list[BaseRoute]) -> None:
    """The body limit, the loopback host check (no tokens) and the request context/metrics."""
    config = state.config
    api.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    if config.bound_to_loopback and not state.tokens.enabled:
        api.add_middleware(LoopbackHostMiddleware)
    if state.app.settings.tracing:  # the jobs a request submits join its trace (W3C traceparent)
        api.add_middleware(tracing.TraceContextMiddleware)
    api.add_middleware(
        RequestContextMiddleware,
        metrics=state.metrics,
        route_of=lambda scope: route_template(known, scope),
    )


def route_template(routes: list[BaseRoute], scope: Scope) -> str:
    """The path template of the route ``scope`` matches (``unmatched`` if none)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            found = getattr(candidate, "path", None)
            if isinstance(found, str):
                return found
    return "unmatched"


def _serve_schema_to_readers(api: FastAPI) -> None:
    """``/openapi.json`` for callers with a token of any role (401 otherwise)."""

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(caller: Reader) -> JSONResponse:
        return JSONResponse(api.openapi())
