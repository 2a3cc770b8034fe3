"""``HTTPClient`` and ``AsyncHTTPClient`` against the real API, served by uvicorn in a thread."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import Any, TypeVar

import httpx
import orjson
import pytest
import uvicorn

import offload
from offload.backends.base import Backend
from offload.core.job import Lease
from offload.service import ServiceConfig, TokenTable, create_app

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
ADMIN, READER = "admin-token", "read-token"
TOKENS = TokenTable.parse(f"{ADMIN}=acme:admin,{READER}=acme:read")
FAST = ServiceConfig(events_poll=0.02, rate_limit=100_000, rate_burst=100_000)


class LiveServer:
    """The real API of an App on memory:// with task ``add``, on a free loopback port."""

    def __init__(self, config: ServiceConfig = FAST, tokens: TokenTable = TOKENS) -> None:
        self.app = offload.App("memory://")

        @self.app.task(name="add")
        def add(a: int, b: int) -> int:
            return a + b

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        api = create_app(self.app, tokens=tokens, config=config)
        cfg = uvicorn.Config(api, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(cfg)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve()

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def call(self, fn: Callable[[Backend], Awaitable[T]]) -> T:
        """Run ``fn(backend)`` on the server's event loop (where its backend lives)."""

        async def with_backend() -> T:
            return await fn(await self.app.backend())

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(with_backend(), self.loop).result(10)

    async def acall(self, fn: Callable[[Backend], Awaitable[T]]) -> T:
        return await asyncio.to_thread(self.call, fn)

    def claim(self, job_id: str) -> Lease:
        async def claim(backend: Backend) -> Lease:
            [record] = await backend.claim("test-worker", {"default": 10}, 10, 30.0)
            assert record.id == job_id
            return Lease(record.id, record.token)

        return self.call(claim)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer() as live:
        yield live


@pytest.fixture(params=["aiohttp", "httpx"])
def wire(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the clients send: aiohttp when it is installed, httpx alone when it is not."""
    if request.param == "httpx":  # as if aiohttp were not installed: importing it fails
        monkeypatch.setitem(sys.modules, "offload.http_client.aiohttp_", None)
    return str(request.param)


@pytest.fixture
def client(server: LiveServer, wire: str) -> Iterator[offload.HTTPClient]:
    with offload.HTTPClient(server.url, token=ADMIN) as c:
        assert (c._aio is not None) == (wire == "aiohttp")
        yield c


@pytest.fixture
async def aclient(server: LiveServer, wire: str) -> AsyncIterator[offload.AsyncHTTPClient]:
    async with offload.AsyncHTTPClient(server.url, token=ADMIN) as c:
        assert (c._aio is not None) == (wire == "aiohttp")
        yield c


def drain(server: LiveServer) -> None:
    """Leave no queued job behind (the tests claim by queue)."""

    async def claim_all(backend: Backend) -> None:
        while await backend.claim("drain", {"default": 100}, 100, 30.0):
            pass

    server.call(claim_all)


@pytest.fixture(autouse=True)
def _empty_queue(server: LiveServer) -> Iterator[None]:
    drain(server)
    yield
    drain(server)


# -- operations ---------------------------------------------------------------------------------


def test_submit_get_cancel_sync(client: offload.HTTPClient) -> None:
    job = client.submit("add", 1, b=2, priority=3)
    assert (job["task"], job["status"], job["args"], job["kwargs"]) == (
        "add",
        "queued",
        [1],
        {"b": 2},
    )
    assert job["priority"] == 3
    assert client.get(job["id"]) == job
    cancelled = client.cancel(job["id"])
    assert cancelled["status"] == "cancelled"
    retried = client.retry(job["id"])
    assert (retried["retry_of"], retried["status"]) == (job["id"], "queued")


async def test_submit_get_cancel_async(aclient: offload.AsyncHTTPClient, wire: str) -> None:
    key = f"k-async-{wire}"  # the server outlives one test: a key per wire
    job = await aclient.submit("add", 1, 2, delay=60, idempotency_key=key)
    assert job["status"] == "scheduled"
    assert (await aclient.submit("add", 1, 2, delay=60, idempotency_key=key))["id"] == job["id"]
    assert (await aclient.get(job["id"]))["id"] == job["id"]
    assert (await aclient.cancel(job["id"]))["status"] == "cancelled"
    assert (await aclient.retry(job["id"]))["retry_of"] == job["id"]


def test_retry_of_a_failed_job(server: LiveServer, client: offload.HTTPClient) -> None:
    job = client.submit("add", 1, 2)
    lease = server.claim(job["id"])
    server.call(lambda b: b.fail(lease, {"type": "Boom", "message": "boom"}))
    assert client.get(job["id"])["status"] == "failed"
    again = client.retry(job["id"])
    assert again["id"] != job["id"]
    assert again["retry_of"] == job["id"]


# -- errors -------------------------------------------------------------------------------------


def test_error_mapping_from_the_real_service(
    server: LiveServer, client: offload.HTTPClient
) -> None:
    with pytest.raises(offload.JobNotFound) as nf:
        client.get("no-such-job")
    assert nf.value.job_id == "no-such-job"
    with pytest.raises(offload.TaskNotFound) as tnf:
        client.submit("nope")
    assert tnf.value.known == ["add"]
    with pytest.raises(offload.InvalidArguments) as bad:
        client.submit("add", 1, 2, 3)
    assert str(bad.value) == "invalid arguments for task 'add': too many positional arguments"
    client.submit("add", 1, 2, idempotency_key="same")
    with pytest.raises(offload.IdempotencyConflict) as conflict:
        client.submit("add", 1, 3, idempotency_key="same")
    assert conflict.value.key == "same"
    job = client.submit("add", 1, 2)
    client.cancel(job["id"])
    with pytest.raises(offload.InvalidTransition) as it:
        client.cancel(job["id"])
    assert (it.value.job_id, it.value.current, it.value.target) == (
        job["id"],
        "cancelled",
        "cancelled",
    )
    with pytest.raises(offload.APIError) as big:
        client.submit("add", "x" * (1024 * 1024), 2)
    assert (big.value.status, big.value.code) == (413, "payload_too_large")


async def test_auth_errors_are_api_errors(server: LiveServer, wire: str) -> None:
    async with offload.AsyncHTTPClient(server.url) as anonymous:
        with pytest.raises(offload.APIError) as no_token:
            await anonymous.get("x")
    assert (no_token.value.status, no_token.value.code) == (401, "unauthorized")
    async with offload.AsyncHTTPClient(server.url, token=READER) as reader:
        with pytest.raises(offload.APIError) as weak:
            await reader.submit("add", 1, 2)
    assert weak.value.status == 403


def _answer(status: int, code: str, details: dict[str, Any] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": f"{code} happened", "details": details or {}}}
    return httpx.Response(status, content=orjson.dumps(body))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_answer(400, "malformed_json"), offload.APIError),
        (_answer(415, "unsupported_media_type"), offload.APIError),
        (_answer(429, "rate_limited"), offload.APIError),
        (_answer(500, "internal_error"), offload.APIError),
        (httpx.Response(502, text="<html>bad gateway</html>"), offload.APIError),
        (_answer(503, "backend_unavailable"), offload.BackendUnavailable),
        (_answer(422, "invalid_request"), offload.APIError),
        (_answer(404, "not_found"), offload.APIError),
    ],
)
def test_error_mapping_of_answers_the_test_service_cannot_give(
    answer: httpx.Response, expected: type[Exception]
) -> None:
    transport = httpx.MockTransport(lambda request: answer)
    with (
        offload.HTTPClient("http://api.test", transport=transport) as c,
        pytest.raises(expected) as e,
    ):
        c.get("x")
    if isinstance(e.value, offload.APIError):
        assert e.value.status == answer.status_code


async def test_unreachable_service_names_the_url(wire: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}"
    with offload.HTTPClient(url) as c, pytest.raises(offload.BackendUnavailable, match=url):
        c.get("x")
    async with offload.AsyncHTTPClient(url) as ac:
        with pytest.raises(offload.BackendUnavailable, match=url):
            await ac.submit("add")


# -- events and wait ----------------------------------------------------------------------------


def _drive_job(server: LiveServer, event: str, job: dict[str, Any], lease: list[Lease]) -> None:
    """Move the job on, one step per event: claim, report progress, complete."""
    if event == "snapshot":
        lease.append(server.claim(job["id"]))
    elif event == "status" and job["status"] == "running":
        server.call(lambda b: b.progress(lease[0], 0.5, "half way"))
    elif event == "progress":
        server.call(lambda b: b.complete(lease[0], 3))


EXPECTED = [
    ("snapshot", "queued", None),
    ("status", "running", None),
    ("progress", "running", 0.5),
    ("status", "succeeded", 0.5),
]


def test_events_sync(server: LiveServer, client: offload.HTTPClient) -> None:
    job = client.submit("add", 1, 2)
    seen: list[tuple[str, str, float | None]] = []
    lease: list[Lease] = []
    for event, data in client.events(job["id"]):
        seen.append((event, data["status"], data["progress"]))
        _drive_job(server, event, data, lease)
    assert seen == EXPECTED


async def test_events_async(server: LiveServer, aclient: offload.AsyncHTTPClient) -> None:
    job = await aclient.submit("add", 1, 2)
    seen: list[tuple[str, str, float | None]] = []
    lease: list[Lease] = []
    async for event, data in aclient.events(job["id"]):
        seen.append((event, data["status"], data["progress"]))
        await asyncio.to_thread(_drive_job, server, event, data, lease)
    assert seen == EXPECTED


async def test_events_can_be_left_early(aclient: offload.AsyncHTTPClient) -> None:
    job = await aclient.submit("add", 1, 2)
    async with aclosing(aclient.events(job["id"])) as events:
        async for event, _ in events:
            assert event == "snapshot"
            break


def test_events_of_a_missing_job(client: offload.HTTPClient) -> None:
    with pytest.raises(offload.JobNotFound):
        next(iter(client.events("missing")))


def _complete_soon(server: LiveServer, job_id: str) -> None:
    lease = server.claim(job_id)
    server.call(lambda b: b.progress(lease, 0.5, None))
    server.call(lambda b: b.complete(lease, 3))


def test_wait_sync_returns_the_finished_job(server: LiveServer, client: offload.HTTPClient) -> None:
    job = client.submit("add", 1, 2)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.wait, job["id"], 10)
        time.sleep(0.05)  # usually the wait is following the stream by now; either way works
        _complete_soon(server, job["id"])
        done = waiting.result(10)
    assert (done["status"], done["result"]) == ("succeeded", 3)


async def test_wait_async_returns_the_finished_job(
    server: LiveServer, aclient: offload.AsyncHTTPClient
) -> None:
    job = await aclient.submit("add", 1, 2)
    waiting = asyncio.create_task(aclient.wait(job["id"], timeout=10))
    await asyncio.sleep(0.05)
    await asyncio.to_thread(_complete_soon, server, job["id"])
    done = await waiting
    assert (done["status"], done["result"]) == ("succeeded", 3)


def test_wait_of_a_failed_job_returns_it(server: LiveServer, client: offload.HTTPClient) -> None:
    job = client.submit("add", 1, 2)
    lease = server.claim(job["id"])
    server.call(lambda b: b.fail(lease, {"type": "Boom", "message": "boom"}))
    assert client.wait(job["id"], timeout=5)["status"] == "failed"


def test_wait_timeout_sync(client: offload.HTTPClient) -> None:
    job = client.submit("add", 1, 2)
    started = time.monotonic()
    with pytest.raises(offload.WaitTimeout, match="still queued"):
        client.wait(job["id"], timeout=0.3)
    assert time.monotonic() - started < 3


async def test_wait_timeout_async(aclient: offload.AsyncHTTPClient) -> None:
    job = await aclient.submit("add", 1, 2)
    started = time.monotonic()
    with pytest.raises(offload.WaitTimeout):
        await aclient.wait(job["id"], timeout=0.3)
    assert time.monotonic() - started < 3


def _dropping_service() -> tuple[httpx.MockTransport, list[str]]:
    """An event stream that ends before the job does, then GETs: running once, then done."""
    calls: list[str] = []
    job = {"id": "j1", "status": "running", "result": None}

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/events"):
            body = b"event: snapshot\ndata: " + orjson.dumps(job) + b"\n\n"
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        n_gets = sum(1 for c in calls if not c.endswith("/events"))
        status = "running" if n_gets < 2 else "succeeded"
        return httpx.Response(200, content=orjson.dumps({**job, "status": status}))

    return httpx.MockTransport(handle), calls


def test_wait_polls_when_the_stream_drops() -> None:
    transport, calls = _dropping_service()
    with offload.HTTPClient("http://api.test", transport=transport) as c:
        assert c.wait("j1", timeout=5)["status"] == "succeeded"
    assert calls == ["/v1/jobs/j1/events", "/v1/jobs/j1", "/v1/jobs/j1"]


async def test_wait_polls_when_the_stream_drops_async() -> None:
    transport, calls = _dropping_service()
    async with offload.AsyncHTTPClient("http://api.test", transport=transport) as c:
        assert (await c.wait("j1", timeout=5))["status"] == "succeeded"
    assert len(calls) == 3


async def test_bodies_of_64_kib_and_more_are_sent_and_answered(
    aclient: offload.AsyncHTTPClient, client: offload.HTTPClient
) -> None:
    """aiohttp carries small bodies; a larger one, under the service's limit, goes by httpx and
    its answer is read (here: ``add`` takes integers)."""
    text = "x" * (100 * 1024)
    with pytest.raises(offload.InvalidArguments):
        await aclient.submit("add", text, 1)
    with pytest.raises(offload.InvalidArguments):
        await asyncio.to_thread(client.submit, "add", text, 1)


def test_many_threads_share_one_sync_client(client: offload.HTTPClient) -> None:
    with ThreadPoolExecutor(16) as pool:
        jobs = list(pool.map(lambda i: client.submit("add", i, 1), range(64)))
    assert sorted(job["args"][0] for job in jobs) == list(range(64))
    assert len({job["id"] for job in jobs}) == 64
