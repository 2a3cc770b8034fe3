"""WatchdogMiddleware on a FastAPI app: a block names the endpoint that was running."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry
from watchdogkit import Records, innermost, monitor_threads

from offload.integrations.watchdog import WatchdogMiddleware


def make_app(*, base_http_middleware: bool = False) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def read_item_slowly(item_id: int) -> dict[str, int]:
        time.sleep(0.3)  # noqa: ASYNC251 - the mistake the watchdog is for
        return {"id": item_id}

    @app.get("/wait")
    async def wait() -> dict[str, bool]:
        await asyncio.sleep(0.6)
        return {"ok": True}

    if base_http_middleware:

        @app.middleware("http")
        async def passthrough(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            return await call_next(request)  # runs the endpoint in a task of its own

    return app


@pytest.fixture
async def watched() -> AsyncIterator[Callable[[FastAPI], httpx.AsyncClient]]:
    middlewares: list[WatchdogMiddleware] = []
    clients: list[httpx.AsyncClient] = []

    def client_for(app: FastAPI) -> httpx.AsyncClient:
        middleware = WatchdogMiddleware(app, threshold_ms=100, registry=CollectorRegistry())
        middlewares.append(middleware)
        transport = httpx.ASGITransport(app=middleware)
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://test"))
        return clients[-1]

    yield client_for
    for client in clients:
        await client.aclose()
    for middleware in middlewares:
        middleware.uninstall()


async def blocked_request(client: httpx.AsyncClient, log: Records) -> None:
    waiting = asyncio.create_task(client.get("/wait"))  # another request in flight meanwhile
    await asyncio.sleep(0.1)
    assert (await client.get("/items/7")).json() == {"id": 7}
    assert (await waiting).status_code == 200
    deadline = time.monotonic() + 5
    while not slow_item_records(log):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


SOURCE = Path(__file__).read_text().splitlines()


def slow_item_records(log: Records) -> list[logging.LogRecord]:
    """The blocks of the slow endpoint (a busy machine may stall the process at other times)."""
    return [r for r in log.records if innermost(r).endswith(" in read_item_slowly")]


@pytest.mark.parametrize("base_http_middleware", [False, True])
async def test_the_blocking_endpoint_is_named(
    watched: Callable[[FastAPI], httpx.AsyncClient],
    watchdog_log: Records,
    base_http_middleware: bool,
) -> None:
    client = watched(make_app(base_http_middleware=base_http_middleware))
    await blocked_request(client, watchdog_log)
    [record] = slow_item_records(watchdog_log)
    # The log names the very line that blocked.
    line = next(n for n, text in enumerate(SOURCE, 1) if "time.sleep(0.3)" in text)
    assert innermost(record).startswith(f"{__file__}:{line} in ") or (
        f"test_watchdog_asgi.py:{line} in read_item_slowly" in innermost(record)
    ), innermost(record)
    assert vars(record)["endpoint"] == "GET /items/{item_id}"
    assert vars(record)["blocked_seconds"] >= 0.3
    assert "in GET /items/{item_id}; blocking stack" in record.getMessage()


async def test_requests_are_forgotten_when_they_end(
    watched: Callable[[FastAPI], httpx.AsyncClient],
) -> None:
    client = watched(make_app())
    await client.get("/wait")
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    middleware = transport.app
    assert isinstance(middleware, WatchdogMiddleware)
    assert middleware.watchdog is not None
    assert middleware.watchdog.requests == {}


async def test_lifespan_installs_and_uninstalls() -> None:
    middleware = WatchdogMiddleware(make_app(), threshold_ms=100, metrics=False)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: Any) -> None:
        await outbox.put(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(middleware(scope, receive, send))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    assert middleware.watchdog is not None
    assert middleware.watchdog.running
    assert len(monitor_threads()) == 1
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await lifespan
    assert middleware.watchdog is None
    assert monitor_threads() == []
