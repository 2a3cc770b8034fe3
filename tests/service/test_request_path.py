"""Every request is handled on the event loop: no endpoint or dependency hops to a thread.

FastAPI runs a plain ``def`` endpoint or dependency in its thread pool, one hop per request;
under load that hop costs more than the whole submit (and a busy pool makes requests queue).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from offload.service import routes_jobs, routes_ops
from offload.service.dashboard import router as dashboard


def _calls(dependant: Dependant) -> Iterator[object]:
    yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _is_async(call: object) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004 - instances such as HTTPBearer
    )


def test_endpoints_and_dependencies_are_coroutines() -> None:
    routers = (routes_jobs.router, routes_ops.router, routes_ops.probes, dashboard)  # create_app's
    routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    assert len(routes) > 10
    for route in routes:
        for call in _calls(route.dependant):
            assert _is_async(call), f"{route.path}: {call!r} would run in a thread"
