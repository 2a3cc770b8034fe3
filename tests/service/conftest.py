"""Fixtures of the HTTP service tests: a real offload App on memory://, SQLite, Redis and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from servicekit import TOKENS, Service, Start, build_app

from offload.backends.base import Backend
from offload.service import ServiceConfig, TokenTable, create_app
from pgkit import postgres_schema_url
from rediskit import redis_namespace_url


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return redis_namespace_url()
    if request.param == "postgres":
        return postgres_schema_url()
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
async def start(backend_url: str) -> AsyncIterator[Start]:
    """Start services (lifespan entered); all are stopped after the test."""
    async with AsyncExitStack() as stack:

        async def starter(
            *,
            tokens: TokenTable | None = None,
            config: ServiceConfig | None = None,
            backend: Backend | None = None,
        ) -> Service:
            app = build_app(backend if backend is not None else backend_url)
            api = create_app(app, tokens=tokens, config=config)
            await stack.enter_async_context(api.router.lifespan_context(api))
            transport = httpx.ASGITransport(app=api)
            client = httpx.AsyncClient(transport=transport, base_url="http://offload.test")
            await stack.enter_async_context(client)
            return Service(app, api, client)

        yield starter


@pytest.fixture
async def svc(start: Start) -> Service:
    """A service with tokens for tenants acme (admin, submit, read) and globex (admin)."""
    return await start(tokens=TOKENS)


@pytest.fixture
async def anon(start: Start) -> Service:
    """A service with no tokens configured: everyone is the anonymous admin of 'default'."""
    return await start()
