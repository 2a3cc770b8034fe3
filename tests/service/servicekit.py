"""Helpers for the HTTP service tests: the test app, tokens, and a raw ASGI SSE reader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

import offload
from offload.backends.base import Backend
from offload.backends.memory import MemoryBackend
from offload.core.job import JobFilter, JobRecord, Lease, NewJob, Page, QueueStats
from offload.errors import BackendUnavailable
from offload.service import TokenTable

#: tenant acme has one token per role; tenant globex has an admin
TOKENS = TokenTable.parse(
    "acme-admin-token=acme:admin,acme-submit-token=acme:submit,acme-read-token=acme:read,"
    "globex-admin-token=globex:admin"
)
ACME_ADMIN = {"Authorization": "Bearer acme-admin-token"}
ACME_SUBMIT = {"Authorization": "Bearer acme-submit-token"}
ACME_READ = {"Authorization": "Bearer acme-read-token"}
GLOBEX_ADMIN = {"Authorization": "Bearer globex-admin-token"}
#: what a request without a token that changes state must say (a body or not)
JSON_TYPE = {"Content-Type": "application/json"}


#: ``start(tokens=..., config=..., backend=...)``: the ``start`` fixture of conftest.py
Start = Callable[..., Awaitable["Service"]]


def build_app(backend: str | Backend) -> offload.App:
    """An offload App with two tasks: ``add`` (thread) and ``send`` (async, queue emails)."""
    app = offload.App(backend)

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="send", queue="emails", retries=2, timeout=30)
    async def send(to: str, subject: str = "") -> None:
        return None

    return app


@dataclass
class Service:
    """A running service: the offload App, the FastAPI app and a client bound to it."""

    app: offload.App
    api: FastAPI
    client: httpx.AsyncClient

    async def backend(self) -> Backend:
        return await self.app.backend()

    async def submit(self, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
        """Submit through the API (``add(1, 2)`` unless told otherwise); return the job."""
        body = {"task": "add", "args": [1, 2], **body}
        response = await self.client.post("/v1/jobs", json=body, headers=headers)
        assert response.status_code == 202, response.text
        job: dict[str, Any] = response.json()
        return job

    async def claim(self, job_id: str) -> Lease:
        """Claim the job through the backend, as a worker would (other due jobs of its queue
        are claimed too: submit those after)."""
        backend = await self.backend()
        record = await backend.get(job_id)
        assert record is not None
        claimed = await backend.claim("test-worker", {record.queue: 10}, 10, 30.0)
        [mine] = [r for r in claimed if r.id == job_id]
        return Lease(mine.id, mine.token)

    async def fail(self, job_id: str) -> JobRecord:
        lease = await self.claim(job_id)
        backend = await self.backend()
        await backend.fail(lease, {"type": "Boom", "message": "boom"})
        record = await backend.get(job_id)
        assert record is not None
        return record


class DownBackend(MemoryBackend):
    """A memory backend that can be switched off: then every call raises BackendUnavailable."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailable("the test switched the backend off")

    async def ping(self) -> None:
        self._check()

    async def submit(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        self._check()
        return await super().submit(jobs)

    async def get(self, job_id: str) -> JobRecord | None:
        self._check()
        return await super().get(job_id)

    async def list_jobs(self, flt: JobFilter) -> Page:
        self._check()
        return await super().list_jobs(flt)

    async def stats(self) -> list[QueueStats]:
        self._check()
        return await super().stats()


async def sse_events(
    api: FastAPI, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, Any]]:
    """Call ``api`` directly and yield ``(event, data)`` pairs as the stream sends them.

    httpx's ASGI transport buffers whole answers; this reader sees each chunk when it is sent,
    so a test can act between events. Comments are yielded as ``(":", text)``. Ends with the
    stream (or raises AssertionError for a non-200 answer).
    """
    messages: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    disconnect = asyncio.Event()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 5000),
        "server": ("offload.test", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        await messages.put(message)

    call = asyncio.create_task(api(scope, receive, send))
    try:
        start = await messages.get()
        assert start["status"] == 200, start
        buffer = b""
        while True:
            message = await messages.get()
            buffer += message.get("body", b"")
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                yield _parse_block(block)
            if not message.get("more_body", False):
                return
    finally:
        disconnect.set()
        await asyncio.wait_for(call, 5)


def _parse_block(block: bytes) -> tuple[str, Any]:
    lines = block.decode().split("\n")
    if lines[0].startswith(":"):
        return ":", lines[0][1:].strip()
    fields = dict(line.split(": ", 1) for line in lines)
    return fields["event"], orjson.loads(fields["data"])
