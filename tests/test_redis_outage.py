"""A real Redis killed under the HTTP API and the Python client: 503s, never a false success,
and the same objects work again once Redis is back (AOF kept what was acknowledged)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import offload
from offload.errors import BackendUnavailable
from offload.service import create_app
from rediskit import RedisServer


@pytest.fixture
def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    redis = RedisServer(tmp_path / "redis")  # AOF, fsync always
    redis.start()
    yield redis
    redis.stop()


async def test_the_api_answers_503_while_redis_is_down_and_recovers(server: RedisServer) -> None:
    app = offload.App(server.url)

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    api = create_app(app)
    async with (
        api.router.lifespan_context(api),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url="http://offload.test"
        ) as client,
    ):
        before = await client.post("/v1/jobs", json={"task": "add", "args": [1, 2]})
        assert before.status_code == 202, before.text

        server.kill()
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert "Retry-After" in ready.headers
        during = await client.post("/v1/jobs", json={"task": "add", "args": [3, 4]})
        assert during.status_code == 503, during.text
        assert during.json()["error"]["code"] == "backend_unavailable"
        assert (await client.get(f"/v1/jobs/{before.json()['id']}")).status_code == 503

        server.start()  # same port, same AOF
        assert (await client.get("/health/ready")).status_code == 200
        kept = await client.get(f"/v1/jobs/{before.json()['id']}")
        assert kept.status_code == 200
        assert kept.json()["status"] == "queued"
        after = await client.post("/v1/jobs", json={"task": "add", "args": [5, 6]})
        assert after.status_code == 202, after.text
        listed = await client.get("/v1/jobs", params={"limit": 10})
        ids = {j["id"] for j in listed.json()["jobs"]}
        assert ids == {before.json()["id"], after.json()["id"]}  # the 503 stored nothing
    await app.aclose()


async def test_the_python_client_raises_backend_unavailable_then_works_again(
    server: RedisServer,
) -> None:
    app = offload.App(server.url)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    first = await noop.asubmit()
    server.kill()
    with pytest.raises(BackendUnavailable, match="unavailable"):
        await noop.asubmit()
    server.start()
    second = await noop.asubmit()
    assert (await first.arefresh()).record.status is offload.State.QUEUED
    assert second.record.status is offload.State.QUEUED
    await app.aclose()
